package basebackup

// Tests of TRAPS.md 10: backup names derived from the start segment
// collide when two backups start in the same second and segment; names
// must be unique and creating a backup must never overwrite (or delete)
// anything another backup stored.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/progress"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// trap10Start and trap10StartWAL are the start time and start segment shared by
// the colliding backups of these tests.
var trap10Start = time.Date(2026, 11, 21, 19, 30, 12, 0, time.UTC)

const trap10StartWAL = "000000010000000000000003"

// trap10Objects returns every object under prefix, key → stored bytes.
func trap10Objects(t *testing.T, st storage.Store, prefix string) map[string][]byte {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), prefix, func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	out := map[string][]byte{}
	for _, k := range keys {
		b, err := readRaw(st, k)
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		out[k] = b
	}
	return out
}

// trap10SameObjects fails the test unless every object of before is still
// stored with the same bytes.
func trap10SameObjects(t *testing.T, st storage.Store, before map[string][]byte, what string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(before)) {
		b, err := readRaw(st, k)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			t.Errorf("%s: %s was deleted", what, k)
		case err != nil:
			t.Errorf("%s: read %s: %v", what, k, err)
		case !bytes.Equal(b, before[k]):
			t.Errorf("%s: %s was overwritten (%d bytes, were %d)", what, k, len(b), len(before[k]))
		}
	}
}

// trap10Want is what a restore of a synthetic data directory must hold as
// restoreFiles reports it: its regular files (postgresql.auto.conf apart,
// a restore appends to it).
func trap10Want(s *synthetic) map[string]string {
	want := map[string]string{}
	for rel, content := range s.want {
		if content != "<dir>" && rel != "postgresql.auto.conf" {
			want[rel] = content
		}
	}
	return want
}

// trap10CheckRestore restores backup name and compares its regular files
// with want, byte for byte, both ways.
func trap10CheckRestore(t *testing.T, st storage.Store, name string, want map[string]string) {
	t.Helper()
	got, err := restoreFiles(t, st, name)
	if err != nil {
		t.Errorf("restore %s: %v", name, err)
		return
	}
	got = maps.Clone(got)
	delete(got, "postgresql.auto.conf")
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("restore %s: %s missing", name, p)
		case g != want[p]:
			t.Errorf("restore %s: %s differs from what was backed up: %q, want %q", name, p, abbrev(g), abbrev(want[p]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			t.Errorf("restore %s: %s restored, but it was not in the backed-up data directory", name, p)
		}
	}
}

// trap10Uploader is the uploader Push makes for backup name. The tests
// run it with one worker (copyDataDir's concurrency 1), so that which file
// lands in which part is deterministic.
func trap10Uploader(t *testing.T, st storage.Store, name string, partSize int64) *uploader {
	return &uploader{st: st, enc: testEncoder(t), backup: name, partSize: partSize, prog: progress.New(nil, "test", "files")}
}

// trap10Manifest completes a synthetic backup as Push does once its files
// are stored: the manifest, under name, written create-only.
func trap10Manifest(t *testing.T, st storage.Store, s *synthetic, up *uploader, cp *copied, name string) error {
	t.Helper()
	m := cp.manifest(name, up.parts, []pg.Tablespace{{OID: 16400, Name: "ts1", Location: s.spc}})
	fillHeader(m)
	m.TablespaceMap = "16400 " + s.spc + "\n"
	return catalog.WriteManifest(context.Background(), st, m)
}

// TestTrap10SameSecondSameSegmentGetDistinctNames runs Push's naming,
// upload and manifest steps (chooseName with the start time and start
// segment, the uploader, WriteManifest) three times with the same second
// and the same start segment, the data directory changing in between, as
// three backups of one cluster that started in the same second and
// segment would. Each must get its own name (the base name, then _2, _3),
// all three must be listed, a later one must leave every object of an
// earlier one byte-identical, and each must restore exactly the files it
// backed up (not those of another).
func TestTrap10SameSecondSameSegmentGetDistinctNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSynthetic(t)
	st := newMem()
	base := "base_" + trap10Start.Format(nameTimeFormat) + "_" + trap10StartWAL
	var names []string
	wants := map[string]map[string]string{}
	before := map[string]map[string][]byte{}
	for i := range 3 {
		// Same size, different bytes: a collision of parts would not show
		// in sizes alone.
		content := strings.Repeat(fmt.Sprintf("%c", 'p'+i), 8192)
		writeFile(t, filepath.Join(s.pgdata, "pg_xact/0000"), content)
		s.want["pg_xact/0000"] = content
		writeFile(t, filepath.Join(s.pgdata, "trap10_marker"), fmt.Sprintf("backup %d\n", i+1))
		s.want["trap10_marker"] = fmt.Sprintf("backup %d\n", i+1)

		name, err := chooseName(ctx, st, trap10Start, trap10StartWAL)
		if err != nil {
			t.Fatalf("backup %d: choose name: %v", i+1, err)
		}
		want := base
		if i > 0 {
			want = fmt.Sprintf("%s_%d", base, i+1)
		}
		if name != want {
			t.Fatalf("backup %d: name %q, want %q", i+1, name, want)
		}
		if err := catalog.ValidateName(name); err != nil {
			t.Fatalf("backup %d: chosen name %q is invalid: %v", i+1, name, err)
		}
		up := trap10Uploader(t, st, name, 8192)
		cp, err := copyDataDir(ctx, up, s.pgdata, 1)
		if err != nil {
			t.Fatalf("backup %s: %v", name, err)
		}
		if err := trap10Manifest(t, st, s, up, cp, name); err != nil {
			t.Fatalf("backup %s: %v", name, err)
		}
		for _, earlier := range names {
			trap10SameObjects(t, st, before[earlier], "backup "+name+" stored after "+earlier)
		}
		names = append(names, name)
		wants[name] = trap10Want(s)
		before[name] = trap10Objects(t, st, repo.BackupsPrefix+name+"/")
	}

	listed, err := catalog.ListBackups(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range listed {
		got = append(got, b.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, names) {
		t.Fatalf("listed backups %v, want %v", got, names)
	}
	for _, name := range names {
		trap10CheckRestore(t, st, name, wants[name])
	}
}

// TestTrap10PartsNeverOverwriteExistingObjects stores a backup's parts
// under a name whose part keys already hold objects of something else (the
// leftovers of a crashed run with that name, or parts of another backup
// that chose the same name): the first case with every part key taken, the
// second with only the second part's key taken. The backup must fail on
// the taken key with storage.ErrExists naming it, must leave every
// existing object byte-identical, and Push's cleanup of a failed backup
// (removeStored) must remove only the parts this backup stored itself,
// never the foreign ones. The manifest is create-only too: writing a
// manifest over an existing one fails and leaves it byte-identical.
func TestTrap10PartsNeverOverwriteExistingObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSynthetic(t)
	const name = "base_20261121T193012Z_000000010000000000000003"
	suffix := testEncoder(t).Suffix()
	partKey := func(i int) string { return fmt.Sprintf("%spart_%05d.tar%s", repo.PartsPrefix(name), i, suffix) }
	for _, tc := range []struct {
		what  string
		taken []int // part numbers whose keys hold a foreign object
	}{
		{"every part key taken", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}},
		{"the second part's key taken", []int{2}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			st := newMem()
			for _, i := range tc.taken {
				body := fmt.Sprintf("foreign object %d, not walrus's to replace", i)
				if err := st.Put(ctx, partKey(i), strings.NewReader(body), storage.PutOptions{Size: int64(len(body))}); err != nil {
					t.Fatal(err)
				}
			}
			before := trap10Objects(t, st, "")
			up := trap10Uploader(t, st, name, 1<<20)
			_, err := copyDataDir(ctx, up, s.pgdata, 1)
			if !errors.Is(err, storage.ErrExists) {
				t.Fatalf("backup over taken part keys: err = %v, want storage.ErrExists", err)
			}
			if first := partKey(tc.taken[0]); !strings.Contains(err.Error(), first) {
				t.Errorf("error %q does not name the taken key %s", err, first)
			}
			trap10SameObjects(t, st, before, "after the failed upload")
			if _, err := up.removeStored(ctx); err != nil {
				t.Fatalf("cleanup: %v", err)
			}
			trap10SameObjects(t, st, before, "after the failed backup's cleanup")
			after := trap10Objects(t, st, "")
			for k := range after {
				if _, ok := before[k]; !ok {
					t.Errorf("%s was left behind by the failed backup", k)
				}
			}
		})
	}

	t.Run("manifest", func(t *testing.T) {
		st := newMem()
		winner := pushSynthetic(t, st, s, name, 1<<20)
		before := trap10Objects(t, st, "")
		other := *winner
		other.Files = slices.Clone(winner.Files)
		other.Files[0].MTime = other.Files[0].MTime.Add(time.Hour)
		err := catalog.WriteManifest(ctx, st, &other)
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("second manifest under %s: err = %v, want storage.ErrExists", name, err)
		}
		trap10SameObjects(t, st, before, "after a second manifest under the same name")
	})
}

// TestTrap10LoserNeverTouchesWinnersParts is the race between chooseName's
// listing and the uploads, at the level of the uploader: a backup (the
// winner) is stored under a name, then the data directory changes late in
// walk order, and a second backup (the loser, whose listing did not see
// the winner's objects) stores its parts under the same name, one worker
// each, so that their first parts hold the same files with the same bytes.
// The loser must fail (the winner's part keys are taken) and Push's
// cleanup of the failed loser (removeStored, which Push runs for a failed
// backup whose manifest was not written) must leave every object of the
// winner byte-identical, so that the winner, listed, restores exactly what
// it backed up.
//
// It failed before repo.Written.Recognised: repo.Encoder.Put turns
// ErrExists into success when the stored object has the bytes it would
// have written, and the loser recorded the winner's byte-identical parts
// as its own; when it then failed on a part that differs, its cleanup
// (up.removeStored) deleted them, and the winner, listed, could not be
// restored. Push now also claims its name first (repo.ClaimKey), so two
// pushes no longer share one.
func TestTrap10LoserNeverTouchesWinnersParts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSynthetic(t)
	st := newMem()
	const name = "base_20261121T193012Z_000000010000000000000003"

	up := trap10Uploader(t, st, name, 8192)
	cp, err := copyDataDir(ctx, up, s.pgdata, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := trap10Manifest(t, st, s, up, cp, name); err != nil {
		t.Fatal(err)
	}
	want := trap10Want(s)
	before := trap10Objects(t, st, "")

	// A change late in walk order: the first parts of both backups hold
	// the same files, byte for byte.
	writeFile(t, filepath.Join(s.pgdata, "pg_xact/0000"), strings.Repeat("y", 8192))
	loser := trap10Uploader(t, st, name, 8192)
	_, err = copyDataDir(ctx, loser, s.pgdata, 1)
	if !errors.Is(err, storage.ErrExists) {
		t.Errorf("the loser stored its parts under the winner's name: err = %v, want storage.ErrExists", err)
	}
	trap10SameObjects(t, st, before, "after the loser's upload")
	if _, err := loser.removeStored(ctx); err != nil {
		t.Fatalf("the loser's cleanup: %v", err)
	}
	trap10SameObjects(t, st, before, "after the loser's cleanup")
	for _, k := range loser.stored {
		if _, ok := before[k]; ok {
			t.Errorf("the loser counts the winner's %s among the objects it stored (and so removes it when it fails)", k)
		}
	}
	listed, err := catalog.ListBackups(ctx, st)
	if err != nil || len(listed) != 1 || listed[0].Name != name {
		t.Fatalf("listed %+v, %v; want the winner %s alone", listed, err, name)
	}
	trap10CheckRestore(t, st, name, want)
}

// trap10Repo is a repository in memory in which every WAL segment is
// present: it stands in for archive_command, which these tests are not
// about, so that Push's wait for the backup's WAL ends at once.
type trap10Repo struct{ storage.Store }

func (r trap10Repo) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if strings.HasPrefix(key, repo.WALPrefix) {
		return storage.ObjectInfo{Key: key, Size: 1}, nil
	}
	return r.Store.Stat(ctx, key)
}

// trap10Blind is a repository whose listings show nothing under backups/
// until its user stores something there: the view of a backup-push whose
// chooseName listed before another backup-push stored anything under the
// same name. Later listings (a cleanup's, say) see everything.
type trap10Blind struct {
	storage.Store
	stored atomic.Bool
}

func (r *trap10Blind) Put(ctx context.Context, key string, body io.Reader, opts storage.PutOptions) error {
	if strings.HasPrefix(key, repo.BackupsPrefix) {
		r.stored.Store(true)
	}
	return r.Store.Put(ctx, key, body, opts)
}

func (r *trap10Blind) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return r.Store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if !r.stored.Load() && strings.HasPrefix(o.Key, repo.BackupsPrefix) {
			return nil
		}
		return fn(o)
	})
}

// trap10Gate holds the Put of a manifest until release is closed, after
// telling reached: a backup-push stopped just before it lists its backup.
type trap10Gate struct {
	storage.Store
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (g *trap10Gate) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if strings.HasSuffix(key, "/manifest.json") {
		g.once.Do(func() { close(g.reached) })
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Store.Put(ctx, key, r, opts)
}

// trap10Clone is a running cluster of the pair trap10Clones makes, and
// the files only it holds.
type trap10Clone struct {
	c      *pgtest.Cluster
	marker string // content of trap10_marker
	data   string // content of trap10_data, larger than a part
}

// trap10Clones makes two running PostgreSQL 15 clusters that are copies of
// one (the same system identifier, timeline and WAL position, as a
// storage snapshot or a standby is), stopped cleanly right after a WAL
// switch so that both have most of a segment ahead of them. Each holds a
// file of its own, same path, different bytes: trap10_marker and
// trap10_data (2 MiB, spanning parts of 1 MiB). Autovacuum is off so
// that nothing changes the data directories behind the test's back;
// archive_command succeeds without archiving (trap10Repo stands in).
func trap10Clones(t *testing.T) (a, b *trap10Clone) {
	t.Helper()
	src := pgtest.New(t, pgtest.Options{Conf: []string{"archive_mode = on", "archive_command = 'true'", "autovacuum = off"}})
	src.Start(t)
	src.Exec(t, "SELECT pg_switch_wal()")
	src.Stop(t)
	clone := filepath.Join(pgtest.SharedDir(t), "clone")
	if out, err := exec.Command("cp", "-a", src.DataDir(), clone).CombinedOutput(); err != nil {
		t.Fatalf("copy the cluster: %v\n%s", err, out)
	}
	dst := pgtest.Attach(t, clone, pgtest.Options{})
	rng := rand.New(rand.NewPCG(10, 10))
	mk := func(c *pgtest.Cluster, who string) *trap10Clone {
		data := make([]byte, 2<<20)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		k := &trap10Clone{c: c, marker: "cluster " + who + "\n", data: string(data)}
		writeFile(t, filepath.Join(c.DataDir(), "trap10_marker"), k.marker)
		writeFile(t, filepath.Join(c.DataDir(), "trap10_data"), k.data)
		pgtest.ChownPostgres(t, c.DataDir())
		c.Start(t)
		return k
	}
	return mk(src, "A"), mk(dst, "B")
}

// trap10Push runs Push on clone k into st, with the clock stopped at
// trap10Start, parts of 1 MiB and one worker (so that which file lands in
// which part is deterministic).
func trap10Push(ctx context.Context, enc *repo.Encoder, st storage.Store, k *trap10Clone) (Result, error) {
	return Push(ctx, Options{
		Store:       st,
		Encoder:     enc,
		Full:        true,
		PGData:      k.c.DataDir(),
		DSN:         k.c.DSN(),
		PartSize:    1 << 20,
		Concurrency: 1,
		WALTimeout:  time.Minute,
		Now:         func() time.Time { return trap10Start },
	})
}

// trap10CheckClone restores backup name and checks that it holds clone k's
// own files, byte for byte, and the other clone's nowhere.
func trap10CheckClone(t *testing.T, st storage.Store, name string, k, other *trap10Clone) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "restored")
	opts := fetchOptions(st, dest)
	opts.Backup = name
	if _, err := Fetch(context.Background(), opts); err != nil {
		t.Errorf("restore %s: %v", name, err)
		return
	}
	for rel, want := range map[string]string{"trap10_marker": k.marker, "trap10_data": k.data} {
		got, err := os.ReadFile(filepath.Join(dest, rel))
		switch {
		case err != nil:
			t.Errorf("restore %s: %v", name, err)
		case string(got) == other.marker || string(got) == other.data:
			t.Errorf("restore %s: %s holds the other cluster's content", name, rel)
		case string(got) != want:
			t.Errorf("restore %s: %s differs from what was backed up (%d bytes, want %d)", name, rel, len(got), len(want))
		}
	}
}

// TestTrap10PushSameSecondSameSegment runs the real Push against two
// running PostgreSQL 15 clusters that are copies of one (same system
// identifier, same WAL position: what a storage snapshot, or a standby and
// its primary, look like), into one repository, with Push's clock (Options.Now)
// stopped on the same second, so that both backups start in the same
// second and the same WAL segment: their names derived from time and
// segment collide.
//
// "one after the other": both Pushes succeed under different names (the
// base name and _2), both are listed, the second left every object of the
// first byte-identical, and each restores its own cluster's files byte
// for byte.
//
// "racing": the loser's listing (chooseName) does not show the winner's
// objects, and the winner is held just before writing its manifest while
// the loser runs, so both use the same name at once. The loser must fail
// (or take another name), its error must name the conflict and say what
// to do; every object the winner stored must stay byte-identical, the
// winner must then succeed, be the only backup listed under that name,
// and restore exactly its own files.
//
// The racing case failed before names were claimed (repo.ClaimKey) for
// the reason TestTrap10LoserNeverTouchesWinnersParts documents; with the
// claim the loser takes the next name, and both backups restore.
func TestTrap10PushSameSecondSameSegment(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL 15")
	}
	ctx := t.Context()
	enc := testEncoder(t)
	a, b := trap10Clones(t)

	t.Run("one after the other", func(t *testing.T) {
		st := trap10Repo{newMem()}
		ra, err := trap10Push(ctx, enc, st, a)
		if err != nil {
			t.Fatalf("first backup: %v", err)
		}
		before := trap10Objects(t, st, repo.BackupsPrefix+ra.Name+"/")
		rb, err := trap10Push(ctx, enc, st, b)
		if err != nil {
			t.Fatalf("second backup, same second and segment: %v", err)
		}
		segA, segB := pg.SegmentForLSN(ra.StartLSN, 16<<20), pg.SegmentForLSN(rb.StartLSN, 16<<20)
		if segA != segB || ra.Timeline != rb.Timeline {
			t.Fatalf("set-up: the backups started in segments %d and %d (timelines %d, %d), not the same one", segA, segB, ra.Timeline, rb.Timeline)
		}
		base := "base_" + trap10Start.Format(nameTimeFormat) + "_" + pg.SegmentName(ra.Timeline, segA, 16<<20)
		if ra.Name != base || rb.Name != base+"_2" {
			t.Errorf("names %q and %q, want %q and %q", ra.Name, rb.Name, base, base+"_2")
		}
		if ra.Name == rb.Name {
			t.Fatalf("both backups are named %s", ra.Name)
		}
		trap10SameObjects(t, st, before, "the first backup, after the second")
		listed, err := catalog.ListBackups(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range listed {
			names = append(names, l.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{ra.Name, rb.Name}) {
			t.Errorf("listed %v, want %s and %s", names, ra.Name, rb.Name)
		}
		trap10CheckClone(t, st, ra.Name, a, b)
		trap10CheckClone(t, st, rb.Name, b, a)
	})

	t.Run("racing", func(t *testing.T) {
		mem := newMem()
		gate := &trap10Gate{Store: trap10Repo{mem}, reached: make(chan struct{}), release: make(chan struct{})}
		type result struct {
			res Result
			err error
		}
		won := make(chan result, 1)
		go func() {
			res, err := trap10Push(ctx, enc, gate, a)
			won <- result{res, err}
		}()
		var w result
		released := false
		defer func() {
			if !released {
				close(gate.release)
			}
		}()
		select {
		case <-gate.reached:
		case w = <-won:
			t.Fatalf("the winner ended before writing its manifest: %v", w.err)
		}
		stored := trap10Objects(t, mem, repo.BackupsPrefix)
		if len(stored) == 0 {
			t.Fatal("set-up: the winner stored nothing before its manifest")
		}
		var winnerName string
		for k := range stored {
			winnerName = strings.Split(strings.TrimPrefix(k, repo.BackupsPrefix), "/")[0]
		}

		lres, lerr := trap10Push(ctx, enc, &trap10Blind{Store: trap10Repo{mem}}, b)
		close(gate.release)
		released = true
		w = <-won

		switch {
		case lerr == nil && lres.Name == winnerName:
			t.Errorf("the loser succeeded under the winner's name %s", winnerName)
		case lerr == nil:
			t.Logf("the loser took another name, %s", lres.Name)
		default:
			msg := lerr.Error()
			if !strings.Contains(msg, winnerName) {
				t.Fatalf("set-up: the loser did not collide with the winner's name %s: %v", winnerName, lerr)
			}
			if !strings.Contains(msg, "already exists") {
				t.Errorf("the loser's error does not name the conflict: %v", lerr)
			}
			if !strings.Contains(msg, "backup-push again") {
				t.Errorf("the loser's error does not say what to do (run backup-push again): %v", lerr)
			}
		}
		trap10SameObjects(t, mem, stored, "the winner's objects, after the loser")
		if w.err != nil {
			t.Fatalf("the winner failed: %v", w.err)
		}
		if w.res.Name != winnerName {
			t.Errorf("the winner is named %s, stored its parts under %s", w.res.Name, winnerName)
		}
		listed, err := catalog.ListBackups(ctx, mem)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range listed {
			names = append(names, l.Name)
		}
		want := []string{winnerName}
		if lerr == nil {
			want = append(want, lres.Name)
			slices.Sort(want)
		}
		if !slices.Equal(names, want) {
			t.Errorf("listed %v, want %v", names, want)
		}
		trap10CheckClone(t, mem, winnerName, a, b)
		if lerr == nil {
			trap10CheckClone(t, mem, lres.Name, b, a)
		}
	})
}
