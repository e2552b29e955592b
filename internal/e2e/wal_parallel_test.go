package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/walfetch"
	"github.com/walrusdb/walrus/walpush"
)

// walrusScript writes a wrapper that runs walrus with env, for commands
// PostgreSQL runs as the postgres user.
func walrusScript(t *testing.T, dir string, env []string) string {
	t.Helper()
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&script, "export %s='%s'\n", k, v)
	}
	fmt.Fprintf(&script, "exec %s \"$@\"\n", testbin.Walrus(t))
	p := filepath.Join(dir, "walrus-"+strconv.Itoa(len(env))+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".sh")
	if err := os.WriteFile(p, []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// burstWAL writes rows and switches segments n times in one statement, so
// that PostgreSQL finds a backlog of ready segments.
func burstWAL(t *testing.T, c *pgtest.Cluster, n, rowsPer int) {
	t.Helper()
	c.Exec(t, fmt.Sprintf(`DO $$ BEGIN FOR i IN 1..%d LOOP
  INSERT INTO t SELECT g, repeat('w', 80) FROM generate_series(1, %d) g;
  PERFORM pg_switch_wal();
END LOOP; END $$`, n, rowsPer))
}

// TestWALParallelArchiveAndPrefetch is issue 7's WAL journey: a cluster
// with 1 MiB segments archives bursts of segments through walrus with
// parallel pushes (no failure, every segment back byte-identical, every
// marker confirmed and used up); a cold copy of it then recovers through
// wal-fetch with prefetching to the last row, served from the prefetch
// directory beside its data directory.
func TestWALParallelArchiveAndPrefetch(t *testing.T) {
	for _, sk := range storages {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			testWALParallelArchiveAndPrefetch(t, sk)
		})
	}
}

func testWALParallelArchiveAndPrefetch(t *testing.T, sk storageKind) {
	repoEnv, repoDir := sk.setup(t)
	shared := pgtest.SharedDir(t)
	push := walrusScript(t, shared, append([]string{"WALRUS_WAL_PUSH_CONCURRENCY=4"}, repoEnv...))
	c := pgtest.New(t, pgtest.Options{WALSegSizeMB: 1, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", push),
		"wal_keep_size = '1GB'",
	}})
	c.Start(t)
	c.Exec(t, "CREATE TABLE t(id int, v text)")
	c.Exec(t, "INSERT INTO t SELECT g, 'base' FROM generate_series(1, 1000) g")
	c.Exec(t, "CHECKPOINT")

	// A cold copy, taken before the WAL it will recover.
	c.Stop(t)
	copyDir := filepath.Join(pgtest.SharedDir(t), "data")
	if out, err := exec.Command("cp", "-a", c.DataDir(), copyDir).CombinedOutput(); err != nil {
		t.Fatalf("copy data directory: %v\n%s", err, out)
	}
	c.Start(t)

	burstWAL(t, c, 30, 200)
	burstWAL(t, c, 30, 200)
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "INSERT INTO t VALUES (-1, 'last row')")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 2*time.Minute)
	if failed := c.QueryRow(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("pg_stat_archiver.failed_count = %s\n%s", failed, c.LogTail(30))
	}
	rows := c.QueryRow(t, "SELECT count(*) FROM t")
	log, _ := os.ReadFile(c.LogFile())
	confirmed := strings.Count(string(log), "pushed ahead earlier; confirmed")
	ahead := strings.Count(string(log), "ahead as wal/")
	t.Logf("%d segments pushed ahead, %d calls confirmed from a marker", ahead, confirmed)
	if confirmed == 0 || ahead == 0 {
		t.Fatalf("no segment was pushed ahead and confirmed: parallel archiving did not happen\n%s", c.LogTail(40))
	}

	walDir := filepath.Join(c.DataDir(), "pg_wal")
	entries, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var segs []string
	for _, e := range entries {
		if segmentName.MatchString(e.Name()) && e.Name() <= last {
			segs = append(segs, e.Name())
		}
	}
	if len(segs) < 60 {
		t.Fatalf("only %d segments in pg_wal", len(segs))
	}
	for _, s := range segs {
		dest := filepath.Join(out, s)
		mustRun(t, repoEnv, "wal-fetch", s, dest)
		want, _ := os.ReadFile(filepath.Join(walDir, s))
		got, err := os.ReadFile(dest)
		if err != nil || !bytes.Equal(want, got) {
			t.Fatalf("segment %s: fetched copy differs (err %v)", s, err)
		}
	}
	// Every marker was confirmed by PostgreSQL's own call for its segment.
	left, _ := filepath.Glob(filepath.Join(walDir, "archive_status", walpush.MarkerDirName, "*"))
	for _, m := range left {
		if seg, _, _ := strings.Cut(filepath.Base(m), "."); seg <= last {
			t.Errorf("marker %s left after its segment was archived", m)
		}
	}
	for _, n := range []string{"ready", "done"} {
		if _, err := os.Stat(filepath.Join(walDir, "archive_status", walpush.MarkerDirName+"."+n)); err == nil {
			t.Errorf("walrus wrote a status file of its own")
		}
	}

	if repoDir != "" {
		t.Run("a marker is confirmed against the repository", func(t *testing.T) {
			testMarkerConfirmedAgainstRepository(t, walDir, segs[len(segs)-8:len(segs)-4])
		})
	}

	// Recovery of the cold copy through restore_command with prefetch.
	fetch := walrusScript(t, shared, repoEnv)
	os.WriteFile(filepath.Join(copyDir, "recovery.signal"), nil, 0o600)
	r := pgtest.Attach(t, copyDir, pgtest.Options{Conf: []string{
		fmt.Sprintf("restore_command = '%s wal-fetch %%f %%p'", fetch),
		"archive_mode = off",
	}})
	prefetchRoot := filepath.Join(filepath.Dir(copyDir), ".walrus-prefetch")
	t.Cleanup(func() { waitPrefetchersDone(t, prefetchRoot) })
	r.Start(t)
	r.WaitPromoted(t, 3*time.Minute)
	if got := r.QueryRow(t, "SELECT count(*) FROM t"); got != rows {
		t.Fatalf("recovered %s rows, want %s\n%s", got, rows, r.LogTail(30))
	}
	if got := r.QueryRow(t, "SELECT v FROM t WHERE id = -1"); got != "last row" {
		t.Fatalf("last row: %q", got)
	}
	rlog, _ := os.ReadFile(r.LogFile())
	served := strings.Count(string(rlog), "restored from the prefetch directory")
	direct := strings.Count(string(rlog), "restored from wal/")
	t.Logf("recovery: %d segments served from the prefetch directory, %d fetched directly", served, direct)
	if served == 0 {
		t.Fatalf("no segment came from the prefetch directory\n%s", r.LogTail(40))
	}
	dirs, _ := filepath.Glob(filepath.Join(prefetchRoot, "*"))
	if len(dirs) != 1 {
		t.Fatalf("prefetch directories %v, want one beside the data directory", dirs)
	}
	waitPrefetchersDone(t, prefetchRoot)
	files, _ := filepath.Glob(filepath.Join(dirs[0], "0*"))
	if len(files) > 8 {
		t.Fatalf("%d prefetched files left, more than wal_prefetch: %v", len(files), files)
	}
	if found, _ := filepath.Glob(filepath.Join(copyDir, "*prefetch*")); len(found) != 0 {
		t.Fatalf("prefetch files inside the data directory: %v", found)
	}

	t.Run("end of archive still exits 1 with prefetch on", func(t *testing.T) {
		dest := filepath.Join(copyDir, "pg_wal", "RECOVERYXLOG")
		res := run(t, repoEnv, "wal-fetch", "0000000100000000000000FE", dest)
		if res.code != 1 {
			t.Fatalf("exit %d, want 1\n%s", res.code, res.stderr)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatal("destination was written")
		}
	})
}

// testMarkerConfirmedAgainstRepository pushes four real segments from a
// copy of pg_wal into a fresh repository with parallel pushes, deletes
// one pushed-ahead object, and checks that PostgreSQL's call for it
// uploads it again while the call for another one only confirms it.
func testMarkerConfirmedAgainstRepository(t *testing.T, walDir string, segs []string) {
	repoDir := filepath.Join(t.TempDir(), "repo")
	env := []string{"WALRUS_REPO=" + repoDir, "WALRUS_WAL_PUSH_CONCURRENCY=4"}
	wal := filepath.Join(t.TempDir(), "pg_wal")
	os.MkdirAll(filepath.Join(wal, "archive_status"), 0o700)
	for _, s := range segs {
		b, err := os.ReadFile(filepath.Join(walDir, s))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(wal, s), b, 0o600)
		os.WriteFile(filepath.Join(wal, "archive_status", s+".ready"), nil, 0o600)
	}
	done := func(s string) {
		st := filepath.Join(wal, "archive_status", s)
		if err := os.Rename(st+".ready", st+".done"); err != nil {
			t.Fatal(err)
		}
	}
	r := mustRun(t, env, "wal-push", filepath.Join(wal, segs[0]))
	if n := strings.Count(r.stderr, "ahead as wal/"); n != 3 {
		t.Fatalf("%d segments pushed ahead, want 3\n%s", n, r.stderr)
	}
	done(segs[0])
	st, err := fs.New(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(context.Background(), "wal/"+segs[1]+".lz4"); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, env, "wal-push", filepath.Join(wal, segs[1]))
	if strings.Contains(r.stderr, "pushed ahead earlier") || !strings.Contains(r.stderr, "stored wal/"+segs[1]) {
		t.Fatalf("segment whose object was deleted was not uploaded again:\n%s", r.stderr)
	}
	done(segs[1])
	dest := filepath.Join(t.TempDir(), "seg")
	mustRun(t, env, "wal-fetch", segs[1], dest)
	want, _ := os.ReadFile(filepath.Join(wal, segs[1]))
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Fatal("re-uploaded segment differs")
	}
	r = mustRun(t, env, "wal-push", filepath.Join(wal, segs[2]))
	if !strings.Contains(r.stderr, "pushed ahead earlier; confirmed wal/"+segs[2]) {
		t.Fatalf("pushed-ahead segment not confirmed:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(wal, "archive_status", segs[2]+".ready")); err != nil {
		t.Fatal("walrus touched a .ready file")
	}
}

// waitPrefetchersDone waits until no prefetcher holds a lock under root,
// so that the test's directories can be removed.
func waitPrefetchersDone(t *testing.T, root string) {
	locks, _ := filepath.Glob(filepath.Join(root, "*", walfetch.LockFile))
	for _, l := range locks {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		deadline := time.Now().Add(time.Minute)
		for syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		f.Close()
	}
}

// TestWALPushDaemon: with wal-push-daemon running, archive_command's
// wal-push only asks the daemon, which pushes ready segments ahead; every
// segment comes back byte-identical. Once the daemon stops, wal-push
// pushes for itself and archiving goes on without a failure.
func TestWALPushDaemon(t *testing.T) {
	t.Parallel()
	repoEnv, _ := storages[0].setup(t)
	shared := pgtest.SharedDir(t)
	push := walrusScript(t, shared, append([]string{"WALRUS_WAL_PUSH_CONCURRENCY=3"}, repoEnv...))
	c := pgtest.New(t, pgtest.Options{WALSegSizeMB: 1, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", push),
		"wal_keep_size = '1GB'",
	}})
	c.Start(t)
	c.Exec(t, "CREATE TABLE t(id int, v text)")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	daemonScript := walrusScript(t, shared, append([]string{"WALRUS_WAL_PUSH_CONCURRENCY=3", "WALRUS_PGDATA=" + c.DataDir()}, repoEnv...))
	daemon, err := pgtest.Command(ctx, daemonScript, "wal-push-daemon")
	if err != nil {
		t.Fatal(err)
	}
	var daemonLog syncBuffer
	daemon.Stderr = &daemonLog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stopDaemon := func() {
		if !stopped {
			stopped = true
			daemon.Process.Signal(syscall.SIGTERM)
			daemon.Wait()
		}
	}
	defer stopDaemon()
	sock := walpush.SocketPath(filepath.Join(c.DataDir(), "pg_wal"))
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's socket never appeared:\n%s", daemonLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	last := burstArchived(t, c, 25, 100)
	log, _ := os.ReadFile(c.LogFile())
	viaDaemon := strings.Count(string(log), "(via wal-push-daemon)")
	confirmed := strings.Count(daemonLog.String(), "(confirmed true)")
	t.Logf("%d files archived through the daemon, %d of them pushed ahead", viaDaemon, confirmed)
	if viaDaemon < 25 || confirmed == 0 {
		t.Fatalf("archiving did not go through the daemon\nserver log:\n%s\ndaemon:\n%s", c.LogTail(20), daemonLog.String())
	}

	stopDaemon()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after the daemon stopped: %v", err)
	}
	last = burstArchived(t, c, 5, 100)

	fetchBackIdentical(t, repoEnv, filepath.Join(c.DataDir(), "pg_wal"), last, 30)
}

// TestWALPushAsync: with wal_push_async, archive_command's wal-push starts
// a wal-push-daemon itself (detached, as the postgres user), archiving
// goes through it without a failure, the daemon exits by itself once idle,
// the next wal-push starts another, and every segment comes back
// byte-identical.
func TestWALPushAsync(t *testing.T) {
	t.Parallel()
	repoEnv, _ := storages[0].setup(t)
	shared := pgtest.SharedDir(t)
	push := walrusScript(t, shared, append([]string{"WALRUS_WAL_PUSH_CONCURRENCY=3", "WALRUS_WAL_PUSH_ASYNC=true", "WALRUS_WAL_PUSH_ASYNC_IDLE=2s"}, repoEnv...))
	c := pgtest.New(t, pgtest.Options{WALSegSizeMB: 1, Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", push),
		"wal_keep_size = '1GB'",
	}})
	walDir := filepath.Join(c.DataDir(), "pg_wal")
	markerDir := filepath.Join(walDir, "archive_status", walpush.MarkerDirName)
	daemonPID := func() int {
		b, _ := os.ReadFile(filepath.Join(markerDir, "daemon.lock"))
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}
	alive := func(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }
	// Runs before the cluster's own cleanup: stop the server (whose
	// archiver could start another daemon), then the daemon, so that none
	// outlives the test.
	t.Cleanup(func() {
		c.Stop(t)
		if pid := daemonPID(); alive(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			for i := 0; i < 100 && alive(pid); i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
	c.Start(t)
	c.Exec(t, "CREATE TABLE t(id int, v text)")

	last := burstArchived(t, c, 25, 100)
	log, _ := os.ReadFile(c.LogFile())
	viaDaemon := strings.Count(string(log), "(via wal-push-daemon)")
	dlog, _ := os.ReadFile(filepath.Join(markerDir, walpush.DaemonLogName))
	confirmed := strings.Count(string(dlog), "(confirmed true)")
	t.Logf("%d files archived through the daemon wal-push started, %d of them pushed ahead", viaDaemon, confirmed)
	if !strings.Contains(string(log), "started a wal-push-daemon") || viaDaemon < 25 || confirmed == 0 {
		t.Fatalf("archiving did not go through a daemon started by wal-push\nserver log:\n%s\ndaemon log:\n%s", c.LogTail(30), dlog)
	}
	first := daemonPID()
	if !alive(first) {
		t.Fatalf("the daemon (pid %d) is not running", first)
	}

	// Idle for longer than wal_push_async_idle: it exits by itself.
	deadline := time.Now().Add(30 * time.Second)
	for alive(first) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not exit when idle:\n%s", dlog)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(walpush.SocketPath(walDir)); !os.IsNotExist(err) {
		t.Fatalf("socket left after the daemon exited: %v", err)
	}

	// The next wal-push starts another.
	last = burstArchived(t, c, 5, 100)
	if second := daemonPID(); second == first || !alive(second) {
		t.Fatalf("no new daemon after the first exited (pids %d, %d)", first, second)
	}

	fetchBackIdentical(t, repoEnv, walDir, last, 30)
}

// fetchBackIdentical fetches every segment in walDir up to last with
// wal-fetch and fails unless each is byte-identical to the file there and
// at least min were checked.
func fetchBackIdentical(t *testing.T, repoEnv []string, walDir, last string, min int) {
	t.Helper()
	entries, _ := os.ReadDir(walDir)
	out := t.TempDir()
	n := 0
	for _, e := range entries {
		if !segmentName.MatchString(e.Name()) || e.Name() > last {
			continue
		}
		dest := filepath.Join(out, e.Name())
		mustRun(t, repoEnv, "wal-fetch", e.Name(), dest)
		want, _ := os.ReadFile(filepath.Join(walDir, e.Name()))
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
			t.Fatalf("segment %s: fetched copy differs", e.Name())
		}
		n++
	}
	if n < min {
		t.Fatalf("only %d segments checked", n)
	}
}

// burstArchived writes n segments (burstWAL), switches to the next one,
// waits until PostgreSQL has archived the last, and fails if any
// archive_command failed. It returns the last segment's name.
func burstArchived(t *testing.T, c *pgtest.Cluster, n, rowsPer int) string {
	t.Helper()
	burstWAL(t, c, n, rowsPer)
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 2*time.Minute)
	if failed := c.QueryRow(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("pg_stat_archiver.failed_count = %s\n%s", failed, c.LogTail(30))
	}
	return last
}
