package basebackup

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/storage"
)

// Small relation segments make segment files .1, .2 cheap: block numbers
// restart in each (TRAPS.md 19) while checksums use the block number in
// the fork, segment*testRelSeg + block.
const (
	testBS     = 8192
	testRelSeg = 4
)

// LSNs of the synthetic backups: each starts at start and finishes at
// start+0x110.
const (
	fullStart   pg.LSN = 0x3000028
	delta1Start pg.LSN = 0x5000028
	delta2Start pg.LSN = 0x7000028
)

// page returns a heap-like page with the given LSN, a body derived from
// tag, and a correct checksum for fork block forkBlock.
func page(lsn pg.LSN, forkBlock uint32, tag byte) []byte {
	p := make([]byte, testBS)
	le := binary.LittleEndian
	le.PutUint32(p[0:], uint32(lsn>>32))
	le.PutUint32(p[4:], uint32(lsn))
	le.PutUint16(p[12:], pg.SizeOfPageHeader+8)
	le.PutUint16(p[14:], testBS-256)
	le.PutUint16(p[16:], testBS)
	le.PutUint16(p[18:], testBS|pg.PageLayoutVersion)
	for i := testBS - 256; i < testBS; i++ {
		p[i] = tag + byte(i)
	}
	le.PutUint16(p[8:], pg.PageChecksum(p, forkBlock))
	return p
}

// relDir is a synthetic data directory whose relation files are made of
// pages.
type relDir struct {
	t      *testing.T
	pgdata string
	spc    string
}

func newRelDir(t *testing.T) *relDir {
	root := t.TempDir()
	return relDirAt(t, filepath.Join(root, "pgdata"), filepath.Join(root, "spc"))
}

// relDirAt is newRelDir with the data directory at pgdata and the
// tablespace 16400 at spc, wherever they are.
func relDirAt(t *testing.T, pgdata, spc string) *relDir {
	t.Helper()
	d := &relDir{t: t, pgdata: pgdata, spc: spc}
	writeFile(t, filepath.Join(d.pgdata, "PG_VERSION"), "15\n")
	writeFile(t, filepath.Join(d.pgdata, "global/pg_control"), string(controlImage()))
	writeFile(t, filepath.Join(d.pgdata, "base/5/PG_VERSION"), "15\n")
	writeFile(t, filepath.Join(d.spc, "PG_15_202209061/5/PG_VERSION"), "15\n")
	if err := os.MkdirAll(filepath.Join(d.pgdata, "pg_tblspc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(d.spc, filepath.Join(d.pgdata, "pg_tblspc/16400")); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *relDir) abs(rel string) string {
	if inner, ok := strings.CutPrefix(rel, "pg_tblspc/16400/"); ok {
		return filepath.Join(d.spc, inner)
	}
	return filepath.Join(d.pgdata, rel)
}

// rel writes a relation segment file of pages with the given LSNs; the
// segment number comes from the path.
func (d *relDir) rel(path string, lsns ...pg.LSN) {
	d.t.Helper()
	rf, ok := pg.ParseRelFilePath(path)
	if !ok {
		d.t.Fatalf("%s is not a relation file path", path)
	}
	var b bytes.Buffer
	for i, l := range lsns {
		b.Write(page(l, uint32(rf.Segment*testRelSeg+i), byte(len(path)+i)))
	}
	writeFile(d.t, d.abs(path), b.String())
}

// setPage replaces block blk of a relation file with a page of LSN lsn
// and body tag, extending the file if needed.
func (d *relDir) setPage(path string, blk int, lsn pg.LSN, tag byte) {
	d.t.Helper()
	rf, _ := pg.ParseRelFilePath(path)
	f, err := os.OpenFile(d.abs(path), os.O_WRONLY, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(page(lsn, uint32(rf.Segment*testRelSeg+blk), tag), int64(blk)*testBS); err != nil {
		d.t.Fatal(err)
	}
}

// snapshot returns every regular file's content by manifest path.
func (d *relDir) snapshot() map[string]string {
	d.t.Helper()
	out := map[string]string{}
	for rel, content := range treeOf(d.t, d.pgdata) {
		if content != "<dir>" && !strings.HasPrefix(content, "-> ") {
			out[rel] = content
		}
	}
	for rel, content := range treeOf(d.t, d.spc) {
		if content != "<dir>" {
			out["pg_tblspc/16400/"+rel] = content
		}
	}
	return out
}

// pushBackup backs up d as Push would, without PostgreSQL: a delta of
// base, or full when base is nil, starting at start, with checksum
// verification. It returns the manifest written and the uploader's
// findings.
func pushBackup(t *testing.T, st storage.Store, d *relDir, name string, base *catalog.Manifest, start pg.LSN, ignoreChecksums bool) (*catalog.Manifest, *uploader, error) {
	t.Helper()
	ctx := context.Background()
	rs := readSettings{verify: true, blockSize: testBS, relSegSize: testRelSeg, startLSN: start}
	if base != nil {
		rs.delta = &deltaBase{m: base}
	}
	up := &uploader{st: st, enc: testEncoder(t), backup: name, partSize: 64 << 10, prog: progress.New(nil, "test", "files"), read: rs}
	cp, err := copyDataDir(ctx, up, d.pgdata, 3)
	if err != nil {
		return nil, up, err
	}
	if err := up.found.checksumError(); err != nil && !ignoreChecksums {
		return nil, up, err
	}
	m := cp.manifest(name, up.parts, []pg.Tablespace{{OID: 16400, Name: "ts1", Location: d.spc}})
	fillHeader(m)
	m.StartLSN, m.FinishLSN = start, start+0x110
	m.DataChecksums = true
	setDelta(m, base, testBS)
	if err := catalog.WriteManifest(ctx, st, m); err != nil {
		t.Fatalf("write manifest: %v", err)
	}
	return m, up, nil
}

func mustPush(t *testing.T, st storage.Store, d *relDir, name string, base *catalog.Manifest, start pg.LSN) *catalog.Manifest {
	t.Helper()
	m, _, err := pushBackup(t, st, d, name, base, start, false)
	if err != nil {
		t.Fatalf("push %s: %v", name, err)
	}
	return m
}

// restoreFiles restores backup name and returns its regular files by
// manifest path (tablespace contents under pg_tblspc/16400/), leaving out
// what a restore adds (backup_label, recovery settings).
func restoreFiles(t *testing.T, st storage.Store, name string) (map[string]string, error) {
	t.Helper()
	root := t.TempDir()
	dest, spc := filepath.Join(root, "restored"), filepath.Join(root, "spc")
	opts := fetchOptions(st, dest)
	opts.Backup = name
	opts.TablespaceMap = map[string]string{"16400": spc}
	opts.Concurrency = 2
	if _, err := Fetch(context.Background(), opts); err != nil {
		if _, serr := os.Lstat(dest); err != nil && serr == nil && !strings.Contains(err.Error(), "incomplete") {
			t.Errorf("a failed restore (%v) wrote %s without saying it is incomplete", err, dest)
		}
		return nil, err
	}
	out := map[string]string{}
	for rel, content := range treeOf(t, dest) {
		switch {
		case content == "<dir>", strings.HasPrefix(content, "-> "),
			rel == "backup_label", rel == "recovery.signal", rel == "tablespace_map", rel == "postgresql.auto.conf":
			continue
		}
		out[rel] = content
	}
	for rel, content := range treeOf(t, spc) {
		if content != "<dir>" {
			out["pg_tblspc/16400/"+rel] = content
		}
	}
	return out, nil
}

func checkRestore(t *testing.T, st storage.Store, name string, want map[string]string) {
	t.Helper()
	got, err := restoreFiles(t, st, name)
	if err != nil {
		t.Fatalf("restore %s: %v", name, err)
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if got[p] != want[p] {
			t.Errorf("restore %s: %s differs: %d bytes, want %d", name, p, len(got[p]), len(want[p]))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("restore %s: %s restored, but it was not in the data directory", name, p)
		}
	}
}

// kinds returns path → kind[:blocks][@source] of the manifest's regular
// files.
func kinds(m *catalog.Manifest) map[string]string {
	out := map[string]string{}
	for _, f := range m.Files {
		switch f.Kind {
		case catalog.FileWhole:
			out[f.Path] = "whole"
		case catalog.FileIncrement:
			out[f.Path] = "increment:" + string(rune('0'+f.Blocks))
		case catalog.FileUnchanged:
			out[f.Path] = "unchanged@" + f.Source
		}
	}
	return out
}

// TestDeltaChain: a full backup, a delta and a delta of the delta of a
// synthetic data directory with relation segments .1 and .2, files that
// grow, shrink, are truncated to nothing, appear, disappear or do not
// change, fsm/vm/init forks and a tablespace. Each backup's manifest says
// how it stores each file, and each restores to exactly the directory it
// was taken of.
func TestDeltaChain(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	old := pg.LSN(0x2000000) // before every backup
	d.rel("base/5/16384", old, old, old, old)
	d.rel("base/5/16384.1", old, old, old, old)
	d.rel("base/5/16384.2", old, old)
	d.rel("base/5/16384_fsm", 0)
	d.rel("base/5/16384_vm", old)
	d.rel("base/5/16385", old, old, old)
	d.rel("base/5/16386", old, old, old, old)
	d.rel("base/5/16387", old, old)
	d.rel("base/5/16389", old, old)
	d.rel("global/1262", old)
	d.rel("pg_tblspc/16400/PG_15_202209061/5/16500", old, old)
	writeFile(t, filepath.Join(d.pgdata, "base/5/16390_init"), "")
	writeFile(t, filepath.Join(d.pgdata, "base/5/pg_filenode.map"), "map v1")
	writeFile(t, filepath.Join(d.pgdata, "postgresql.conf"), "# conf\n")
	full := mustPush(t, st, d, "base_full", nil, fullStart)
	atFull := d.snapshot()

	// Changes after the full backup's start.
	l1 := pg.LSN(0x4000000)
	d.setPage("base/5/16384", 2, l1, 1)
	d.setPage("base/5/16384.1", 0, l1, 2)
	d.setPage("base/5/16384.1", 3, l1, 3)
	d.setPage("base/5/16384.2", 2, l1, 4)        // the last segment grows
	d.setPage("base/5/16389", 1, fullStart, 5)   // exactly the threshold
	appendZeroPage(t, d.abs("base/5/16389"))     // a zero page is a real page
	os.Truncate(d.abs("base/5/16386"), 2*testBS) // shrank: whole
	os.Remove(d.abs("base/5/16387"))             // dropped
	d.rel("base/5/16388", old, old)              // new with old LSNs (copied): whole
	d.setPage("pg_tblspc/16400/PG_15_202209061/5/16500", 1, l1, 6)
	writeFile(t, filepath.Join(d.pgdata, "base/5/pg_filenode.map"), "map v2")
	d1 := mustPush(t, st, d, "base_d1", full, delta1Start)
	atD1 := d.snapshot()

	want1 := map[string]string{
		"PG_VERSION":             "whole",
		"global/pg_control":      "whole",
		"global/1262":            "unchanged@base_full",
		"postgresql.conf":        "whole",
		"base/5/PG_VERSION":      "whole",
		"base/5/pg_filenode.map": "whole",
		"base/5/16384":           "increment:1",
		"base/5/16384.1":         "increment:2",
		"base/5/16384.2":         "increment:1",
		"base/5/16384_fsm":       "whole",
		"base/5/16384_vm":        "whole",
		"base/5/16385":           "unchanged@base_full",
		"base/5/16386":           "whole",
		"base/5/16388":           "whole",
		"base/5/16389":           "increment:2",
		"base/5/16390_init":      "whole",
		"pg_tblspc/16400/PG_15_202209061/5/16500":      "increment:1",
		"pg_tblspc/16400/PG_15_202209061/5/PG_VERSION": "whole",
	}
	if got := kinds(d1); !maps.Equal(got, want1) {
		t.Errorf("delta 1 stores:\n%v\nwant\n%v", got, want1)
	}
	if *d1.DeltaFrom != "base_full" || *d1.DeltaRoot != "base_full" || d1.Kind != catalog.KindDelta {
		t.Errorf("delta 1 is %s from %s root %s", d1.Kind, *d1.DeltaFrom, *d1.DeltaRoot)
	}
	if d1.DeltaSize <= 0 || d1.DeltaSize >= full.DataSize {
		t.Errorf("delta 1 stores %d bytes itself, of %d", d1.DeltaSize, full.DataSize)
	}

	// Changes after delta 1's start.
	l2 := pg.LSN(0x6000000)
	d.setPage("base/5/16384", 0, l2, 7)
	os.Truncate(d.abs("base/5/16389"), 0) // truncated to nothing: shrank
	d.setPage("base/5/16388", 1, l2, 8)
	d.rel("base/5/16391", l2)
	d2 := mustPush(t, st, d, "base_d2", d1, delta2Start)
	atD2 := d.snapshot()
	want2 := maps.Clone(want1)
	maps.Copy(want2, map[string]string{
		"base/5/16384":   "increment:1",
		"base/5/16384.1": "unchanged@base_d1",
		"base/5/16384.2": "unchanged@base_d1",
		"base/5/16386":   "unchanged@base_d1",
		"base/5/16388":   "increment:1",
		"base/5/16389":   "whole",
		"base/5/16391":   "whole",
		"pg_tblspc/16400/PG_15_202209061/5/16500": "unchanged@base_d1",
	})
	if got := kinds(d2); !maps.Equal(got, want2) {
		t.Errorf("delta 2 stores:\n%v\nwant\n%v", got, want2)
	}
	if *d2.DeltaFrom != "base_d1" || *d2.DeltaRoot != "base_full" {
		t.Errorf("delta 2 from %s root %s", *d2.DeltaFrom, *d2.DeltaRoot)
	}

	// Planning from the manifests alone finds each file's copies, and
	// refuses links that do not fit together.
	pl, err := planChain([]*catalog.Manifest{d2, d1, full})
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range pl.files {
		var got []string
		for _, s := range fr.sources {
			got = append(got, pl.links[s.link].Name+":"+s.e.Kind)
		}
		want := map[string]string{
			"base/5/16384":   "base_d2:increment base_d1:increment base_full:whole",
			"base/5/16384.1": "base_d1:increment base_full:whole",
			"base/5/16385":   "base_full:whole",
			"base/5/16386":   "base_d1:whole",
			"base/5/16391":   "base_d2:whole",
		}[fr.f.Path]
		if want != "" && strings.Join(got, " ") != want {
			t.Errorf("%s is read from %v, want %s", fr.f.Path, got, want)
		}
	}
	for what, edit := range map[string]func(m *catalog.Manifest){
		"unchanged since the wrong backup": func(m *catalog.Manifest) { m.File("base/5/16384.1").Source = "base_full" },
		"unchanged over nothing":           func(m *catalog.Manifest) { m.File("base/5/16391").Kind = catalog.FileUnchanged },
		"unchanged with another size":      func(m *catalog.Manifest) { m.File("base/5/16385").Size += testBS },
	} {
		m := *d2
		m.Files = slices.Clone(d2.Files)
		edit(&m)
		if _, err := planChain([]*catalog.Manifest{&m, d1, full}); !errors.Is(err, catalog.ErrBrokenChain) {
			t.Errorf("%s: %v", what, err)
		}
	}

	checkRestore(t, st, "base_d2", atD2)
	checkRestore(t, st, "base_d1", atD1)
	checkRestore(t, st, "base_full", atFull)
	if _, ok := atD2["base/5/16387"]; ok {
		t.Fatal("test setup: the dropped file is still there")
	}

	// A missing or damaged link is named before anything is written.
	ctx := context.Background()
	raw, err := readRaw(st, "backups/base_d1/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	st.Delete(ctx, "backups/base_d1/manifest.json")
	if _, err := restoreFiles(t, st, "base_d2"); err == nil || !strings.Contains(err.Error(), "base_d1") || !errors.Is(err, catalog.ErrBrokenChain) {
		t.Errorf("restore with delta 1's manifest gone: %v", err)
	}
	st.Put(ctx, "backups/base_d1/manifest.json", bytes.NewReader(raw), storage.PutOptions{Size: int64(len(raw))})
	// The part of delta 1 that holds the increment of 16384.1, which
	// delta 2 records as unchanged since delta 1.
	var victim catalog.Part
	for _, p := range d1.Parts {
		if p.Name == d1.File("base/5/16384.1").Part {
			victim = p
		}
	}
	praw, err := readRaw(st, victim.Key)
	if err != nil {
		t.Fatal(err)
	}
	st.Delete(ctx, victim.Key)
	if _, err := restoreFiles(t, st, "base_d2"); err == nil || !strings.Contains(err.Error(), "base_d1") || !strings.Contains(err.Error(), victim.Name) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("restore with a part of delta 1 gone: %v", err)
	}
	// A corrupt part of a link fails the restore, which says it is
	// incomplete.
	praw[len(praw)/2] ^= 0x10
	st.Put(ctx, victim.Key, bytes.NewReader(praw), storage.PutOptions{Size: int64(len(praw))})
	if _, err := restoreFiles(t, st, "base_d2"); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("restore with a part of delta 1 corrupt: %v", err)
	}
}

func appendZeroPage(t *testing.T, p string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, testBS)); err != nil {
		t.Fatal(err)
	}
}

func readRaw(st storage.Store, key string) ([]byte, error) {
	rc, err := st.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(rc)
	return b.Bytes(), err
}

// TestDeltaChecksumFailure: a page that fails its checksum (twice) fails
// the backup, named by path and block, unless checksum errors are ignored;
// one whose LSN is past the backup's start was torn in flight and passes;
// a page with an LSN past the end of the backup is reported.
func TestDeltaChecksumFailure(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	old := pg.LSN(0x2000000)
	d.rel("base/5/16384", old, old, old)
	d.rel("base/5/16385.1", old, old)
	d.rel("base/5/16386", old)
	full := mustPush(t, st, d, "base_full", nil, fullStart)

	corrupt := func(rel string, blk int, lsn pg.LSN) {
		rf, _ := pg.ParseRelFilePath(rel)
		p := page(lsn, uint32(rf.Segment*testRelSeg+blk), 9)
		p[testBS-1] ^= 0xFF // body changed after the checksum
		f, _ := os.OpenFile(d.abs(rel), os.O_WRONLY, 0)
		f.WriteAt(p, int64(blk)*testBS)
		f.Close()
	}
	corrupt("base/5/16384", 1, old)                // unchanged LSN: an increment would skip it, but it is damaged
	corrupt("base/5/16385.1", 1, delta1Start+0x10) // torn in flight
	d.rel("base/5/16387", old, old)                // new: stored whole, verified too
	corrupt("base/5/16387", 0, old)
	d.setPage("base/5/16386", 0, 0x9000000, 1) // past the end of the backup

	_, _, err := pushBackup(t, st, d, "base_d1", full, delta1Start, false)
	if err == nil || !strings.Contains(err.Error(), "base/5/16384 block 1") || !strings.Contains(err.Error(), "base/5/16387 block 0") ||
		strings.Contains(err.Error(), "16385") || !strings.Contains(err.Error(), "--ignore-checksum-errors") {
		t.Fatalf("delta over damaged pages: %v", err)
	}
	m, up, err := pushBackup(t, st, d, "base_d1b", full, delta1Start, true)
	if err != nil {
		t.Fatal(err)
	}
	if w := up.found.checksumWarnings(); len(w) != 1 || !strings.Contains(w[0], "base/5/16384 block 1") {
		t.Errorf("checksum warnings: %v", w)
	}
	if w := up.found.pastWarnings(m.FinishLSN); len(w) != 1 || !strings.Contains(w[0], "base/5/16386 block 0") {
		t.Errorf("warnings of pages past the end: %v", w)
	}
	if k := kinds(m); k["base/5/16384"] != "increment:1" || k["base/5/16385.1"] != "increment:1" {
		t.Errorf("damaged and torn pages are not both stored: %v", k)
	}
	// The damaged page is restored as it was read.
	checkRestore(t, st, "base_d1b", d.snapshot())
}

// TestFullBackupVerifiesChecksums: a full backup verifies pages too.
func TestFullBackupVerifiesChecksums(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	d.rel("base/5/16384", 0x2000000, 0x2000000)
	f, _ := os.OpenFile(d.abs("base/5/16384"), os.O_WRONLY, 0)
	f.WriteAt([]byte{0xFF}, testBS+testBS-1)
	f.Close()
	if _, _, err := pushBackup(t, st, d, "base_full", nil, fullStart, false); err == nil || !strings.Contains(err.Error(), "base/5/16384 block 1") {
		t.Fatalf("full backup over a damaged page: %v", err)
	}
}

// TestChooseBase: when a delta is taken, on which base, and why not.
func TestChooseBase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	facts := clusterFacts{sysID: testSysID, pgVersion: 150004, dataChecksums: true, blockSize: testBS, timeline: 1, startLSN: 0x9000028, walSuffix: ".lz4"}
	opts := Options{DeltaMaxSteps: 2}
	st := newMem()
	dec := fetchOptions(st, "").Decoder

	c, err := chooseBase(ctx, st, dec, opts, facts)
	if err != nil || c.base != nil || !strings.Contains(c.reason, "no backup") {
		t.Fatalf("empty repository: %+v %v", c, err)
	}
	put := func(name string, base *catalog.Manifest, tli pg.TimelineID, start pg.LSN) *catalog.Manifest {
		m := minimalManifest(t, st, name, nil, nil)
		m.Timeline, m.StartLSN, m.FinishLSN = tli, start, start+0x110
		m.DataChecksums = true
		setDelta(m, base, testBS)
		if err := catalog.WriteManifest(ctx, st, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	full := put("base_full", nil, 1, 0x3000028)
	if c, err := chooseBase(ctx, st, dec, opts, facts); err != nil || c.base == nil || c.base.Name != "base_full" || c.steps != 1 || c.root != "base_full" {
		t.Fatalf("one full backup: %+v %v", c, err)
	}
	if c, _ := chooseBase(ctx, st, dec, Options{Full: true, DeltaMaxSteps: 2}, facts); c.base != nil || c.reason != "" {
		t.Errorf("--full: %+v", c)
	}
	if c, _ := chooseBase(ctx, st, dec, Options{}, facts); c.base != nil || !strings.Contains(c.reason, "delta_max_steps is 0") {
		t.Errorf("delta_max_steps 0: %+v", c)
	}
	d1 := put("base_d1", full, 1, 0x5000028)
	d2 := put("base_d2", d1, 1, 0x7000028)
	if c, _ := chooseBase(ctx, st, dec, opts, facts); c.base != nil || !strings.Contains(c.reason, "delta_max_steps is 2") {
		t.Errorf("a chain of 2 deltas with delta_max_steps 2: %+v", c)
	}
	if c, _ := chooseBase(ctx, st, dec, Options{DeltaFrom: "LATEST"}, facts); c.base == nil || c.base.Name != d2.Name || c.steps != 3 {
		t.Errorf("--delta-from LATEST ignores delta_max_steps: %+v", c)
	}
	if c, _ := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_d1"}, facts); c.base == nil || c.base.Name != "base_d1" || c.steps != 2 {
		t.Errorf("--delta-from base_d1: %+v", c)
	}
	if _, err := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_nope"}, facts); !errors.Is(err, catalog.ErrNoBackup) {
		t.Errorf("--delta-from a missing backup: %v", err)
	}
	notUsable := map[string]func(f *clusterFacts){
		"data_checksums":     func(f *clusterFacts) { f.dataChecksums = false },
		"system":             func(f *clusterFacts) { f.sysID++ },
		"the server runs 16": func(f *clusterFacts) { f.pgVersion = 160002 },
		"page size":          func(f *clusterFacts) { f.blockSize = 16384 },
		"another history":    func(f *clusterFacts) { f.startLSN = 0x5000000 },
	}
	for want, edit := range notUsable {
		f := facts
		edit(&f)
		if c, err := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_d1"}, f); err != nil || c.base != nil || !strings.Contains(c.reason, want) {
			t.Errorf("%s: %+v %v", want, c, err)
		}
	}

	// Timelines: the base on timeline 1, the server on 2.
	f2 := facts
	f2.timeline = 2
	if c, _ := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_d1"}, f2); c.base != nil || !strings.Contains(c.reason, "00000002.history is not in the repository") {
		t.Errorf("no history file: %+v", c)
	}
	putHistory := func(tli pg.TimelineID, content string) {
		if _, err := testEncoder(t).Put(ctx, st, "wal/"+pg.HistoryFileName(tli), strings.NewReader(content), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Timeline 2 branched off at 0/6000000: delta 1 (finished 0/5000138)
	// is on its history, delta 2 (0/7000028) is not.
	putHistory(2, "1\t0/6000000\tno recovery target specified\n")
	if c, _ := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_d1"}, f2); c.base == nil || c.base.Name != "base_d1" {
		t.Errorf("base on the parent timeline before the branch: %+v", c)
	}
	if c, _ := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_d2"}, f2); c.base != nil || !strings.Contains(c.reason, "forked") {
		t.Errorf("base on the abandoned part of the parent timeline: %+v", c)
	}
	// Timeline 3 branched off timeline 1 inside delta 1's backup.
	f3 := facts
	f3.timeline = 3
	putHistory(3, "1\t0/5000100\tbefore the end of delta 1\n")
	if c, _ := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_d1"}, f3); c.base != nil || !strings.Contains(c.reason, "forked") {
		t.Errorf("branch point inside the base backup: %+v", c)
	}
	// A base on a timeline the server is not a descendant of.
	put("base_t4", nil, 4, 0x8000028)
	if c, _ := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_t4"}, f2); c.base != nil || !strings.Contains(c.reason, "timeline 4") {
		t.Errorf("base on a sibling timeline: %+v", c)
	}
	// A broken chain below the base.
	st.Delete(ctx, "backups/base_d1/manifest.json")
	if c, err := chooseBase(ctx, st, dec, Options{DeltaFrom: "base_d2"}, facts); err != nil || c.base != nil || !strings.Contains(c.reason, "base_d1") {
		t.Errorf("base with a broken chain: %+v %v", c, err)
	}
}
