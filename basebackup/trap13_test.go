package basebackup

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/storage"
)

// trap13Old is the LSN of every page these tests write: before fullStart,
// so that a delta finds the pages of a relation file unchanged.
const trap13Old pg.LSN = 0x2000000

// trap13Emptied are the directories directly in PGDATA whose contents a
// base backup leaves out (pg/exclude.go), pg_wal apart.
var trap13Emptied = []string{"pg_stat_tmp", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans"}

// trap13TopLevelSkipped are the files a base backup leaves out when they
// are directly in PGDATA (pg/exclude.go).
var trap13TopLevelSkipped = []string{
	"postmaster.pid", "postmaster.opts", "postgresql.auto.conf.tmp",
	"current_logfiles", "current_logfiles.tmp", "backup_label", "backup_label.old",
	"tablespace_map", "tablespace_map.old", "backup_manifest", "backup_manifest.tmp",
	"recovery.signal", "standby.signal", "recovery.conf", "recovery.done", pg.RestoreConfigFile,
}

// trap13Content is what a test put in a relDir, and what a backup of it
// must hold: exactly the regular files of want, the directories of dirs
// and the tablespace link pg_tblspc/16400.
type trap13Content struct {
	d      *relDir
	want   map[string]string // manifest path → content of a regular file kept
	dirs   map[string]bool   // directories kept
	absent []string          // paths left out
}

func newTrap13Content(d *relDir) *trap13Content {
	c := &trap13Content{d: d, want: map[string]string{}, dirs: map[string]bool{"pg_tblspc": true}}
	for _, p := range []string{"PG_VERSION", controlFilePath, "base/5/PG_VERSION", "pg_tblspc/16400/PG_15_202209061/5/PG_VERSION"} {
		b, err := os.ReadFile(d.abs(p))
		if err != nil {
			d.t.Fatal(err)
		}
		c.expect(p, string(b))
	}
	return c
}

// expect records that the regular file rel, with content, is kept, and so
// are its parent directories.
func (c *trap13Content) expect(rel, content string) {
	c.want[rel] = content
	c.expectDir(path.Dir(rel))
}

// expectDir records that the directory rel is kept, and so are its
// parents.
func (c *trap13Content) expectDir(rel string) {
	for ; rel != "." && rel != "pg_tblspc/16400"; rel = path.Dir(rel) {
		c.dirs[rel] = true
	}
}

// put writes the file rel, which the backup keeps.
func (c *trap13Content) put(rel, content string) {
	c.d.t.Helper()
	writeFile(c.d.t, c.d.abs(rel), content)
	c.expect(rel, content)
}

// rel writes the relation file rel of two sound pages, which the backup
// keeps.
func (c *trap13Content) rel(rel string) {
	c.d.t.Helper()
	c.d.rel(rel, trap13Old, trap13Old)
	b, err := os.ReadFile(c.d.abs(rel))
	if err != nil {
		c.d.t.Fatal(err)
	}
	c.expect(rel, string(b))
}

// skip writes the file rel, which the backup leaves out.
func (c *trap13Content) skip(rel string) {
	c.d.t.Helper()
	writeFile(c.d.t, c.d.abs(rel), "leave me out")
	c.absent = append(c.absent, rel)
}

// dir makes the directory rel, which the backup keeps (with none of what
// skip puts in it).
func (c *trap13Content) dir(rel string) {
	c.d.t.Helper()
	if err := os.MkdirAll(c.d.abs(rel), 0o700); err != nil {
		c.d.t.Fatal(err)
	}
	c.expectDir(rel)
}

// trap13Page is a sound page with LSN trap13Old, as block 0 of a fork.
func trap13Page(tag byte) string { return string(page(trap13Old, 0, tag)) }

// trap13DamagedPage is a page whose body changed after its checksum was
// computed: a relation file holding it fails checksum verification.
func trap13DamagedPage(t *testing.T) string {
	t.Helper()
	p := page(trap13Old, 0, 0x5a)
	p[testBS-1] ^= 0xFF
	if pg.PageChecksum(p, 0) == pg.ParsePageHeader(p).Checksum {
		t.Fatal("test setup: the damaged page has a valid checksum")
	}
	return string(p)
}

// checkManifest checks the stored manifest of backup name, a full backup
// of c: every regular file kept is stored whole with its size and CRC,
// every directory kept is a directory, pg_tblspc/16400 is the one
// symbolic link, and nothing else is listed. It returns the manifest.
func (c *trap13Content) checkManifest(t *testing.T, st storage.Store, name string) *catalog.Manifest {
	t.Helper()
	m, err := catalog.ReadManifest(context.Background(), st, name)
	if err != nil {
		t.Fatalf("read manifest of %s: %v", name, err)
	}
	for _, p := range slices.Sorted(maps.Keys(c.want)) {
		f := m.File(p)
		switch {
		case f == nil:
			t.Errorf("manifest of %s: %s is missing, it must be backed up", name, p)
		case f.Kind != catalog.FileWhole || f.Size != int64(len(c.want[p])) || f.CRC32C != crcOf(c.want[p]):
			t.Errorf("manifest of %s: %s is %s, %d bytes, CRC %s; want whole, %d bytes, CRC %s", name, p, f.Kind, f.Size, f.CRC32C, len(c.want[p]), crcOf(c.want[p]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(c.dirs)) {
		if f := m.File(p); f == nil || f.Kind != catalog.FileDir {
			t.Errorf("manifest of %s: %s is %+v, want a directory", name, p, f)
		}
	}
	for _, p := range c.absent {
		if f := m.File(p); f != nil {
			t.Errorf("manifest of %s: %s is listed (%s), it must be left out", name, p, f.Kind)
		}
	}
	for _, f := range m.Files {
		_, isFile := c.want[f.Path]
		if !isFile && !c.dirs[f.Path] && f.Path != "pg_tblspc/16400" {
			t.Errorf("manifest of %s: unexpected entry %s (%s)", name, f.Path, f.Kind)
		}
	}
	if f := m.File("pg_tblspc/16400"); f == nil || f.Kind != catalog.FileSymlink || f.Link != c.d.spc {
		t.Errorf("manifest of %s: pg_tblspc/16400 is %+v, want a symbolic link to %s", name, f, c.d.spc)
	}
	return m
}

// trap13Restore restores backup name into dest, its tablespace 16400 into
// spc, and returns the restored tree as treeOf lists it, the tablespace's
// contents under pg_tblspc/16400/ and the link itself as
// "<tablespace link>", without the files a restore adds.
func trap13Restore(t *testing.T, st storage.Store, name, dest, spc string) map[string]string {
	t.Helper()
	opts := fetchOptions(st, dest)
	opts.Backup = name
	opts.TablespaceMap = map[string]string{"16400": spc}
	opts.Concurrency = 2
	if _, err := Fetch(context.Background(), opts); err != nil {
		t.Fatalf("restore %s into %s: %v", name, dest, err)
	}
	tree := treeOf(t, dest)
	if tree["pg_tblspc/16400"] != "-> "+spc {
		t.Errorf("restore %s: pg_tblspc/16400 is %q, want a link to %s", name, tree["pg_tblspc/16400"], spc)
	}
	tree["pg_tblspc/16400"] = "<tablespace link>"
	for _, p := range []string{"backup_label", "tablespace_map", "recovery.signal", "postgresql.auto.conf", pg.RestoreConfigFile} {
		delete(tree, p)
	}
	for rel, content := range treeOf(t, spc) {
		tree["pg_tblspc/16400/"+filepath.ToSlash(rel)] = content
	}
	return tree
}

// checkTree checks that a restored tree (trap13Restore) is exactly c:
// the files kept with their content, the directories kept, the
// tablespace link, nothing else.
func (c *trap13Content) checkTree(t *testing.T, what string, tree map[string]string) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(c.want)) {
		got, ok := tree[p]
		switch {
		case !ok:
			t.Errorf("%s: %s was not restored", what, p)
		case got != c.want[p]:
			t.Errorf("%s: %s restored as %q, want %q", what, p, abbrev(got), abbrev(c.want[p]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(c.dirs)) {
		if tree[p] != "<dir>" {
			t.Errorf("%s: %s restored as %q, want a directory", what, p, abbrev(tree[p]))
		}
	}
	for _, p := range c.absent {
		if _, ok := tree[p]; ok {
			t.Errorf("%s: %s was restored, it must be left out", what, p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(tree)) {
		_, isFile := c.want[p]
		if !isFile && !c.dirs[p] && p != "pg_tblspc/16400" {
			t.Errorf("%s: unexpected %s restored (%q)", what, p, abbrev(tree[p]))
		}
	}
}

// fillTrap13DataDir puts into c the files of a small cluster, with the
// exclusions at their exact paths, and, directly in PGDATA, files named
// as the rules of base/, global/ or a database directory would leave out
// or treat as relation files there, but which are neither directly in
// PGDATA: a top-level 16385 with a damaged page must not be verified, a
// top-level 16384 must be stored whole by a delta.
func fillTrap13DataDir(t *testing.T, c *trap13Content) {
	t.Helper()
	c.rel("base/5/16384")
	c.put("base/5/16384_fsm", trap13Page(3))
	c.rel("global/1262")
	c.rel("pg_tblspc/16400/PG_15_202209061/5/16500")
	c.put("base/5/16390_init", "")
	c.skip("base/5/16390") // unlogged: only its init fork is kept
	c.skip("base/5/t3_16400")
	c.skip("base/5/pg_internal.init")
	c.skip("global/pg_internal.init")
	c.skip("base/pgsql_tmp/pgsql_tmp1.0")
	c.skip("postmaster.pid")
	c.dir("pg_wal")
	c.skip("pg_wal/000000010000000000000001")
	c.dir("pg_wal/archive_status")
	c.skip("pg_wal/archive_status/000000010000000000000001.done")
	c.dir("pg_stat_tmp")
	c.skip("pg_stat_tmp/global.stat")
	c.put("postgresql.conf", "shared_buffers = 128MB\n")

	c.put("16384", trap13Page(9))
	c.put("16385", trap13DamagedPage(t))
	c.put("16390", trap13Page(10))
	c.put("16390_init", "")
	c.put("t3_16400", "not a temporary relation here\n")
	c.put("pg_internal.init", "not the relation cache here\n")
	c.put("pgsql_tmp_notes", "not a temporary file here\n")
}

// trap13Entries lists a manifest's entries by path with what must not
// depend on where the data directory is: kind, size, mode, CRC.
func trap13Entries(m *catalog.Manifest) map[string]string {
	out := map[string]string{}
	for _, f := range m.Files {
		out[f.Path] = fmt.Sprintf("%s %04o %d bytes CRC %s", f.Kind, uint32(f.Mode), f.Size, f.CRC32C)
	}
	return out
}

// TestTrap13DataDirPathNamedLikeItsContents (TRAPS.md 13): a data directory
// whose absolute path is made of names that mean something inside one
// (.../base/1/log/pg_wal/archive_status/global/pg_tblspc/16400/PG_15_202209061/pg_stat_tmp/pgsql_tmp/base/5),
// with a tablespace under .../pg_tblspc/16400, is backed up exactly as the
// same files under a plain path: the same manifest entries (the files and
// directories kept, and only those, with their sizes and CRCs), and a
// restore, itself into a destination named the same way, gives the same
// tree, the expected one. Relation files are recognised by their
// PGDATA-relative path only: directly in PGDATA, whose absolute path ends
// in base/5, the files 16384, 16390 (beside 16390_init), t3_16400,
// pg_internal.init and pgsql_tmp_notes are kept and are not relation
// files, so a damaged page in the top-level 16385 fails nothing, and a
// delta stores the top-level 16384 whole while base/5/16384 is unchanged;
// a damaged page in base/5/16384 does fail the backup.
func TestTrap13DataDirPathNamedLikeItsContents(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	oddPGDATA := filepath.Join(tmp, "base/1/log/pg_wal/archive_status/global/pg_tblspc/16400/PG_15_202209061/pg_stat_tmp/pgsql_tmp/base/5")
	oddSpc := filepath.Join(tmp, "base/5/pg_wal/pg_tblspc/16400")
	plain := newTrap13Content(relDirAt(t, filepath.Join(tmp, "plain/pgdata"), filepath.Join(tmp, "plain/spc")))
	odd := newTrap13Content(relDirAt(t, oddPGDATA, oddSpc))
	fillTrap13DataDir(t, plain)
	fillTrap13DataDir(t, odd)

	stPlain, stOdd := newMem(), newMem()
	if _, _, err := pushBackup(t, stPlain, plain.d, "base_full", nil, fullStart, false); err != nil {
		t.Fatalf("full backup of the data directory at a plain path: %v", err)
	}
	if _, _, err := pushBackup(t, stOdd, odd.d, "base_full", nil, fullStart, false); err != nil {
		t.Fatalf("full backup of the data directory at %s: %v", oddPGDATA, err)
	}
	mPlain := plain.checkManifest(t, stPlain, "base_full")
	mOdd := odd.checkManifest(t, stOdd, "base_full")
	ePlain, eOdd := trap13Entries(mPlain), trap13Entries(mOdd)
	for _, p := range slices.Sorted(maps.Keys(ePlain)) {
		if p != "pg_tblspc/16400" && ePlain[p] != eOdd[p] {
			t.Errorf("manifest entry %s: %q from the plain path, %q from %s", p, ePlain[p], eOdd[p], oddPGDATA)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(eOdd)) {
		if _, ok := ePlain[p]; !ok {
			t.Errorf("manifest entry %s (%s) only in the backup from %s", p, eOdd[p], oddPGDATA)
		}
	}

	treePlain := trap13Restore(t, stPlain, "base_full", filepath.Join(tmp, "restore/plain/data"), filepath.Join(tmp, "restore/plain/spc"))
	treeOdd := trap13Restore(t, stOdd, "base_full", filepath.Join(tmp, "restore/base/5/pg_wal/global/data"), filepath.Join(tmp, "restore/pg_tblspc/16400"))
	plain.checkTree(t, "restore from the plain path", treePlain)
	odd.checkTree(t, "restore from "+oddPGDATA, treeOdd)
	if !maps.Equal(treePlain, treeOdd) {
		t.Errorf("the two restores differ:\nplain path: %v\nodd path:   %v", slices.Sorted(maps.Keys(treePlain)), slices.Sorted(maps.Keys(treeOdd)))
	}

	// A delta: relation files (by their PGDATA-relative path) with no
	// page changed are unchanged, anything else is stored whole.
	mustPush(t, stOdd, odd.d, "base_d1", mOdd, delta1Start)
	md, err := catalog.ReadManifest(context.Background(), stOdd, "base_d1")
	if err != nil {
		t.Fatal(err)
	}
	k := kinds(md)
	for p, want := range map[string]string{
		"base/5/16384": "unchanged@base_full",
		"global/1262":  "unchanged@base_full",
		"pg_tblspc/16400/PG_15_202209061/5/16500": "unchanged@base_full",
		"base/5/16384_fsm":                        "whole",
		"16384":                                   "whole",
		"16390":                                   "whole",
		"16385":                                   "whole",
	} {
		if k[p] != want {
			t.Errorf("delta from %s: %s is stored as %q, want %q", oddPGDATA, p, k[p], want)
		}
	}
	odd.checkTree(t, "restore of the delta from "+oddPGDATA, trap13Restore(t, stOdd, "base_d1", filepath.Join(tmp, "restore/d1/base/5/data"), filepath.Join(tmp, "restore/d1/pg_tblspc/16400")))

	// The relation file base/5/16384 is verified: a damaged page in it
	// fails the backup, naming it.
	damagePage(t, odd.d, "base/5/16384", 1, trap13Old)
	_, _, err = pushBackup(t, stOdd, odd.d, "base_damaged", nil, fullStart, false)
	if err == nil || !strings.Contains(err.Error(), "base/5/16384 block 1") {
		t.Errorf("backup from %s with a damaged page in base/5/16384: err = %v, want a checksum failure of base/5/16384 block 1", oddPGDATA, err)
	} else if strings.Contains(err.Error(), "16385") {
		t.Errorf("backup from %s verified the top-level 16385, which is not a relation file: %v", oddPGDATA, err)
	}
}

// TestTrap13NestedSpecialNamesKept (TRAPS.md 13): every exclusion applies
// at its exact PGDATA-relative path only. The contents of pg_wal (but not
// the directory, nor its empty archive_status), of pg_stat_tmp,
// pg_replslot, pg_dynshmem, pg_notify, pg_serial, pg_snapshots and
// pg_subtrans (the directories kept), the top-level postmaster.pid,
// backup_label, recovery.signal... , pg_internal.init in global/ and in a
// database directory, base/pgsql_tmp, a temporary relation and the main
// fork of an unlogged relation are left out. The same names anywhere else
// are kept with their content: a top-level log/ (logging_collector's),
// mystuff/log/, mystuff/pg_wal/ with a segment and archive_status,
// conf.d/pg_replslot/, mystuff/<each emptied directory>/, mystuff/<each
// top-level skipped file>, global/sub/pg_internal.init, a top-level
// pg_internal.init, mystuff/base/pgsql_tmp/, mystuff/base/5/ with
// relation-like, unlogged-like and temporary-like names. The manifest
// lists exactly what is kept and the restore gives exactly that tree. A
// file under mystuff/ named like a relation file is not one: a damaged
// page in mystuff/global/1262 fails nothing, and a delta stores
// mystuff/base/5/16384 whole while base/5/16384 is unchanged.
func TestTrap13NestedSpecialNamesKept(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	c := newTrap13Content(d)
	c.rel("base/5/16384")
	c.rel("global/1262")
	c.put("postgresql.conf", "logging_collector = on\n")

	// The exclusions, at their exact paths.
	for _, name := range trap13TopLevelSkipped {
		c.skip(name)
	}
	c.dir("pg_wal")
	c.skip("pg_wal/000000010000000000000001")
	c.skip("pg_wal/00000002.history")
	c.dir("pg_wal/archive_status")
	c.skip("pg_wal/archive_status/000000010000000000000001.ready")
	for _, name := range trap13Emptied {
		c.dir(name)
		c.skip(name + "/junk")
	}
	c.skip("global/pg_internal.init")
	c.skip("base/5/pg_internal.init")
	c.skip("base/pgsql_tmp/pgsql_tmp1.0")
	c.skip("base/5/t3_16400")
	c.put("base/5/16390_init", "")
	c.skip("base/5/16390")

	// The same names elsewhere.
	c.put("log/postgresql-2026-11-21_193012.log", "LOG:  database system is ready\n")
	c.put("mystuff/log/x.txt", "x\n")
	c.put("mystuff/pg_wal/000000010000000000000001", "not WAL here\n")
	c.put("mystuff/pg_wal/archive_status/000000010000000000000001.done", "")
	c.put("conf.d/pg_replslot/z", "z\n")
	for _, name := range trap13Emptied {
		c.put("mystuff/"+name+"/junk", "kept "+name+"\n")
	}
	for _, name := range trap13TopLevelSkipped {
		c.put("mystuff/"+name, "kept "+name+"\n")
	}
	c.put("global/sub/pg_internal.init", "kept\n")
	c.put("pg_internal.init", "kept\n")
	c.put("mystuff/base/pgsql_tmp/pgsql_tmp1.0", "kept\n")
	c.put("mystuff/base/5/16384", trap13Page(11))
	c.put("mystuff/base/5/16390", trap13Page(12))
	c.put("mystuff/base/5/16390_init", "")
	c.put("mystuff/base/5/t3_16400", "kept\n")
	c.put("mystuff/base/5/pg_internal.init", "kept\n")
	c.put("mystuff/global/1262", trap13DamagedPage(t))
	c.put("mystuff/pg_tblspc/16400/lost+found/x", "kept\n")

	if _, _, err := pushBackup(t, st, d, "base_full", nil, fullStart, false); err != nil {
		t.Fatalf("full backup: %v", err)
	}
	m := c.checkManifest(t, st, "base_full")
	root := t.TempDir()
	c.checkTree(t, "restore", trap13Restore(t, st, "base_full", filepath.Join(root, "restored"), filepath.Join(root, "spc")))

	mustPush(t, st, d, "base_d1", m, delta1Start)
	md, err := catalog.ReadManifest(context.Background(), st, "base_d1")
	if err != nil {
		t.Fatal(err)
	}
	k := kinds(md)
	for p, want := range map[string]string{
		"base/5/16384":         "unchanged@base_full",
		"global/1262":          "unchanged@base_full",
		"mystuff/base/5/16384": "whole",
		"mystuff/base/5/16390": "whole",
		"mystuff/global/1262":  "whole",
	} {
		if k[p] != want {
			t.Errorf("delta: %s is stored as %q, want %q", p, k[p], want)
		}
	}
	c.checkTree(t, "restore of the delta", trap13Restore(t, st, "base_d1", filepath.Join(root, "restored_d1"), filepath.Join(root, "spc_d1")))
}

// TestTrap13SymlinksInsideDataDir (TRAPS.md 13, package doc): a symbolic
// link inside PGDATA other than a tablespace link is followed and stored
// as what it points to, and its target is recorded in the manifest's Link
// of that entry: a link to a file outside PGDATA (absolute target), to a
// directory outside (relative target), pg_wal itself on another disk (the
// directory kept with its empty archive_status, the segments left out as
// for a plain pg_wal), a directory named log, a relation file of a
// database directory (verified and classified by its path in PGDATA) and
// a link to a file inside PGDATA. A dangling link is left out with a
// warning. The restore writes regular files and directories, never a
// symbolic link but the tablespace's, and does not touch the targets.
func TestTrap13SymlinksInsideDataDir(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	c := newTrap13Content(d)
	c.rel("base/5/16384")
	c.put("postgresql.conf", "include_dir = 'conf.d'\n")

	outside := filepath.Join(t.TempDir(), "outside")
	writeFile(t, filepath.Join(outside, "linked.conf"), "from a link\n")
	writeFile(t, filepath.Join(outside, "confdir/a.conf"), "a = 1\n")
	writeFile(t, filepath.Join(outside, "confdir/sub/b.conf"), "b = 2\n")
	writeFile(t, filepath.Join(outside, "wal/000000010000000000000001"), "a segment")
	writeFile(t, filepath.Join(outside, "wal/archive_status/000000010000000000000001.done"), "")
	writeFile(t, filepath.Join(outside, "logs/server.log"), "LOG:  ready\n")
	rel16387 := trap13Page(13)
	writeFile(t, filepath.Join(outside, "16387"), rel16387)
	relTarget := func(fromDir, to string) string {
		r, err := filepath.Rel(filepath.Join(d.pgdata, fromDir), to)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	links := []struct{ rel, target string }{
		{"linked.conf", filepath.Join(outside, "linked.conf")},
		{"conf.d", relTarget(".", filepath.Join(outside, "confdir"))},
		{"pg_wal", filepath.Join(outside, "wal")},
		{"log", filepath.Join(outside, "logs")},
		{"base/5/16387", relTarget("base/5", filepath.Join(outside, "16387"))},
		{"main.conf", "postgresql.conf"},
	}
	for _, l := range links {
		if err := os.Symlink(l.target, filepath.Join(d.pgdata, filepath.FromSlash(l.rel))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "missing.conf"), filepath.Join(d.pgdata, "dangling.conf")); err != nil {
		t.Fatal(err)
	}
	c.expect("linked.conf", "from a link\n")
	c.expect("conf.d/a.conf", "a = 1\n")
	c.expect("conf.d/sub/b.conf", "b = 2\n")
	c.expectDir("pg_wal/archive_status")
	c.absent = append(c.absent, "pg_wal/000000010000000000000001", "pg_wal/archive_status/000000010000000000000001.done", "dangling.conf")
	c.expect("log/server.log", "LOG:  ready\n")
	c.expect("base/5/16387", rel16387)
	c.expect("main.conf", "include_dir = 'conf.d'\n")
	before := treeOf(t, outside)

	w, err := walkDataDir(d.pgdata)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(w.warnings, func(s string) bool { return strings.Contains(s, "dangling.conf") }) {
		t.Errorf("no warning names the dangling link dangling.conf: %q", w.warnings)
	}

	if _, _, err := pushBackup(t, st, d, "base_full", nil, fullStart, false); err != nil {
		t.Fatalf("full backup: %v", err)
	}
	m := c.checkManifest(t, st, "base_full")
	for _, l := range links {
		f := m.File(l.rel)
		if f == nil {
			continue // reported by checkManifest
		}
		resolved := l.target
		if !filepath.IsAbs(resolved) {
			resolved = filepath.Join(d.pgdata, filepath.Dir(filepath.FromSlash(l.rel)), resolved)
		}
		if f.Link != l.target && f.Link != resolved {
			t.Errorf("manifest: %s (%s) records the link target %q, want %q", l.rel, f.Kind, f.Link, l.target)
		}
	}
	for _, f := range m.Files {
		if f.Kind == catalog.FileSymlink && f.Path != "pg_tblspc/16400" {
			t.Errorf("manifest: %s is stored as a symbolic link to %s, want what it points to", f.Path, f.Link)
		}
	}

	root := t.TempDir()
	dest := filepath.Join(root, "restored")
	c.checkTree(t, "restore", trap13Restore(t, st, "base_full", dest, filepath.Join(root, "spc")))
	for _, l := range links {
		if fi, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(l.rel))); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("restore: %s is a symbolic link, want the %s it pointed to", l.rel, m.File(l.rel).Kind)
		}
	}
	if after := treeOf(t, outside); !maps.Equal(before, after) {
		t.Errorf("the link targets outside the data directory changed:\nbefore %v\nafter  %v", before, after)
	}
}
