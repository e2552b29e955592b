package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/storage/fs"
)

// TestDeltaOnPagesChangedDuringBaseCopy (TRAPS.md 16): a delta's threshold
// is its base's START LSN, not its stop LSN. A page changed during the
// base's copy after the copy read it has an LSN between the base's start
// and stop; the base holds its old version (replay repairs it when the
// base itself is restored), so a delta on that base must store the page:
// restoring the delta replays WAL only from the delta's own start.
//
// A full backup F of a cluster with a 7 MB table t (autovacuum off) is
// slowed down (backup_rate_limit); the test follows F's copy of t's file
// through /proc/<pid>/fdinfo (the read offset of walrus's descriptor on
// it) and, once the copy has read the first 128 pages, updates one row on
// each of 16 of them, one committed transaction each: those pages are
// changed after F read them. It then checks that the updates' WAL lies
// before F's finish LSN (otherwise the setup proved nothing), takes a delta
// D on F with nothing writing, and only then reads the source's table
// digests (reading t earlier would prune the updated pages, giving them
// LSNs past F's stop that any threshold would catch). D must store the
// updated pages (t's file is an increment of at least 16 pages, or
// whole), and D restored with --target-immediate into a new directory
// must hold every table as the source, the updated rows with their new
// values.
func TestDeltaOnPagesChangedDuringBaseCopy(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/fdinfo"); err != nil {
		t.Fatalf("needs /proc/<pid>/fdinfo (Linux) to follow the copy: %v", err)
	}
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())
	// One file at a time, read at 4 MiB/s: t's file is open for about
	// 2 seconds, and the updates start after its first MiB.
	slowEnv := append(append([]string{}, env...), "WALRUS_BACKUP_RATE_LIMIT=4MiB", "WALRUS_PART_SIZE=1MiB", "WALRUS_UPLOAD_CONCURRENCY=1")

	// About 23 rows a page, with room on each page for HOT updates; no
	// autovacuum, whose pruning would give the pages new LSNs.
	c.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, pad text) WITH (fillfactor = 70, autovacuum_enabled = off)")
	c.Exec(t, "INSERT INTO t SELECT g, 0, repeat(md5(g::text), 6) FROM generate_series(1, 20000) g")
	c.Exec(t, "CREATE TABLE other AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000) g")
	// Hint bits, visibility map and freezing settled before F.
	c.Exec(t, "VACUUM (FREEZE, ANALYZE)")

	const (
		pageSize    = 8192
		readFirst   = 1 << 20 // bytes of t's file F must have read before the updates
		everyNth    = 8       // update pages 0, 8, ..., below readFirst
		linePointer = 1       // the row updated on each page: (page, linePointer)
	)
	rel := c.QueryRow(t, "SELECT pg_relation_filepath('t')")
	if pages, _ := strconv.Atoi(c.QueryRow(t, "SELECT pg_relation_size('t') / 8192")); pages*pageSize < 4*readFirst {
		t.Fatalf("test setup: t has %d pages, want at least %d", pages, 4*readFirst/pageSize)
	}
	var ids []string
	for blk := 0; blk*pageSize < readFirst; blk += everyNth {
		ids = append(ids, c.QueryRow(t, fmt.Sprintf("SELECT id FROM t WHERE ctid = '(%d,%d)'", blk, linePointer)))
	}
	tableFile, err := filepath.EvalSymlinks(filepath.Join(c.DataDir(), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	conn := c.Conn(t)

	// F, slowly; the updates once its copy of t's file is past readFirst.
	cmd, stderr := startWalrus(t, slowEnv, "backup-push", "--full", "--verbose", c.DataDir())
	done := waitChan(t, cmd)
	var pos int64
	deadline := time.Now().Add(2 * time.Minute)
	for pos < readFirst {
		select {
		case err := <-done:
			t.Fatalf("backup-push F ended (%v) before the test saw it read %d bytes of %s (last offset seen %d): too fast or too slow a machine for this test\n%s", err, readFirst, rel, pos, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("backup-push F has not read %d bytes of %s in 2 minutes (last offset seen %d)\n%s", readFirst, rel, pos, stderr.String())
		}
		if p, ok := readOffset(cmd.Process.Pid, tableFile); ok {
			pos = p
		}
	}
	for _, id := range ids {
		if _, err := conn.Exec(t.Context(), "UPDATE t SET v = v + 1 WHERE id = "+id); err != nil {
			t.Fatal(err)
		}
	}
	afterUpdates := c.QueryRow(t, "SELECT pg_current_wal_insert_lsn()")
	t.Logf("updated %d rows on pages 0..%d of %s after F had read %d bytes of it", len(ids), (len(ids)-1)*everyNth, rel, pos)

	var ferr error
	select {
	case ferr = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("backup-push F did not finish in 2 minutes\n%s", stderr.String())
	}
	if ferr != nil {
		t.Fatalf("backup-push F: %v\n%s", ferr, stderr.String())
	}
	bs := listChain(t, env)
	if len(bs) != 1 {
		t.Fatalf("backup-list after F: %+v", bs)
	}
	var full string
	for name := range bs {
		full = name
	}
	st, err := fs.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	fm, err := catalog.ReadManifest(t.Context(), st, full)
	if err != nil {
		t.Fatal(err)
	}
	// The setup's proof: every update was written after F started and
	// before it stopped, and (offset above) after F read the page.
	if c.QueryRow(t, fmt.Sprintf("SELECT '%s'::pg_lsn <= '%s'::pg_lsn AND '%s'::pg_lsn < '%s'::pg_lsn", fm.StartLSN, afterUpdates, afterUpdates, fm.FinishLSN)) != "t" {
		t.Fatalf("test setup: the updates ended at %s, outside F's range %s..%s (the copy finished first: too slow a machine for this test)\n%s", afterUpdates, fm.StartLSN, fm.FinishLSN, stderr.String())
	}
	t.Logf("F %s: start %s, finish %s; updates ended at %s", full, fm.StartLSN, fm.FinishLSN, afterUpdates)

	// D on F, with nothing writing (and nothing reading t: see above).
	r := mustRun(t, env, "backup-push", "--verbose", c.DataDir())
	delta := strings.TrimSpace(r.stdout)
	if b := listChain(t, env)[delta]; b.Kind != catalog.KindDelta || b.DeltaFrom == nil || *b.DeltaFrom != full {
		t.Fatalf("backup-push gave %+v, want a delta of %s\n%s", b, full, r.stderr)
	}
	want := c.AllTableDigests(t, "postgres")
	wantRows := c.Query(t, "SELECT id, v FROM t WHERE id IN ("+strings.Join(ids, ",")+") ORDER BY id")

	dm, err := catalog.ReadManifest(t.Context(), st, delta)
	if err != nil {
		t.Fatal(err)
	}
	switch f := dm.File(rel); {
	case f == nil:
		t.Errorf("delta %s has no entry for %s", delta, rel)
	case f.Kind == catalog.FileWhole:
	case f.Kind == catalog.FileIncrement && f.Blocks >= int64(len(ids)):
	default:
		t.Errorf("delta %s stores %s as %s with %d pages, want the %d pages updated during F's copy (F started at %s, finished at %s)\n%s",
			delta, rel, f.Kind, f.Blocks, len(ids), fm.StartLSN, fm.FinishLSN, r.stderr)
	}

	dest := filepath.Join(pgtest.SharedDir(t), "restored")
	mustRun(t, env, "backup-fetch", dest, delta, "--target-immediate")
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 2*time.Minute)
	if got := rc.AllTableDigests(t, "postgres"); !reflect.DeepEqual(got, want) {
		t.Errorf("tables restored from delta %s differ from the source:\n%s", delta, diffDigests(got, want))
	}
	if got := rc.Query(t, "SELECT id, v FROM t WHERE id IN ("+strings.Join(ids, ",")+") ORDER BY id"); !reflect.DeepEqual(got, wantRows) {
		t.Errorf("rows updated during F's copy, on pages F had read, restored from delta %s: (id, v)\n got %v\nwant %v", delta, got, wantRows)
	}
	rc.Stop(t)
}

// readOffset returns the file offset of process pid's open descriptor on
// path (from /proc/<pid>/fdinfo), and whether it has one.
func readOffset(pid int, path string) (int64, bool) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return 0, false
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err != nil || target != path {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(l, "pos:"); ok {
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					return n, true
				}
			}
		}
	}
	return 0, false
}
