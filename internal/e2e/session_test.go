package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// TestBackupSessionTerminated (TRAPS.md 9): a non-exclusive backup belongs
// to its session. When the backup's PostgreSQL session is terminated
// (pg_terminate_backend) while backup-push is still copying, backup-push
// fails saying the session was lost, before it has copied everything (it
// checks its session during the copy and never reaches pg_backup_stop),
// lists nothing, leaves no parts, and
// never opens another session to call pg_backup_stop (the server log, with
// every statement logged, shows no pg_backup_stop after the termination,
// while it does show the one of the next, successful backup). The next
// backup-push succeeds and restores with the data.
func TestBackupSessionTerminated(t *testing.T) {
	t.Parallel()
	// Slow enough that the backup is still copying when its session is
	// terminated, and long after the watch's next check (about 25 MB at
	// 1 MiB/s, checks every 5 s).
	c, repoDir, env, slowEnv := slowBackupCluster(t, "1MiB")

	logStart := logSize(t, c)
	cmd, stderr := startWalrus(t, slowEnv, "backup-push", "--verbose", c.DataDir())
	done := waitChan(t, cmd)
	waitFor(t, "a part of the slow backup in the repository", func() bool { return len(storedParts(repoDir)) > 0 })
	pid := backupSession(t, c)
	if starts := statementPIDs(logSince(t, c, logStart), "pg_backup_start"); len(starts) != 1 || starts[0] != pid {
		t.Fatalf("pg_backup_start was run by sessions %v, want only the walrus session %s\n%s", starts, pid, logSince(t, c, logStart))
	}

	if ok := c.QueryRow(t, "SELECT pg_terminate_backend("+pid+")"); ok != "t" {
		t.Fatalf("pg_terminate_backend(%s) returned %s", pid, ok)
	}
	terminated := time.Now()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("backup-push still runs 2 minutes after its session was terminated\n%s", stderr.String())
	}
	t.Logf("backup-push exited %v after its session was terminated", time.Since(terminated).Round(time.Millisecond))
	out := stderr.String()
	if err == nil {
		t.Fatalf("backup-push succeeded although its session was terminated during the backup\n%s", out)
	}
	// What happened, in walrus's words (the backup's session or connection
	// is lost, so the backup is void: PostgreSQL's own "terminating
	// connection due to administrator command" does not say that), and
	// what to do (run backup-push again).
	var failure strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ERROR:") {
			failure.WriteString(l + "\n")
		}
	}
	if !sessionLost.MatchString(failure.String()) {
		t.Errorf("backup-push does not say that the backup's session was lost:\n%s", out)
	}
	if !strings.Contains(failure.String(), "run backup-push again") {
		t.Errorf("backup-push does not say what to do after losing its session:\n%s", out)
	}
	// It noticed during the copy: it never went on to pg_backup_stop.
	if strings.Contains(out, ": pg_backup_stop") {
		t.Errorf("backup-push copied everything and reached pg_backup_stop before it noticed its session was gone:\n%s", out)
	}
	if !strings.Contains(out, ": pg_backup_start") {
		t.Fatalf("no debug lines from backup-push --verbose (the check above would pass for nothing):\n%s", out)
	}
	if bs := listBackups(t, env); len(bs) != 0 {
		t.Fatalf("backup-list after the session was terminated: %+v", bs)
	}
	if parts := storedParts(repoDir); len(parts) != 0 {
		t.Errorf("parts left by the void backup: %v", parts)
	}
	waitFor(t, "no walrus session on the server", func() bool {
		return c.QueryRow(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walrus'") == "0"
	})
	// The server aborted the backup with its session, and nobody called
	// pg_backup_stop: not the terminated session, not a new one.
	void := logSince(t, c, logStart)
	if !regexp.MustCompile(`\[` + pid + `\] .*aborting backup due to backend exiting before pg_backup_stop was called`).MatchString(void) {
		t.Errorf("the server log does not show session %s's backup aborted:\n%s", pid, void)
	}
	for _, l := range strings.Split(void, "\n") {
		if strings.Contains(l, "pg_backup_stop") && !strings.Contains(l, "aborting backup due to backend exiting") {
			t.Errorf("pg_backup_stop reached the server after the backup's session was terminated: %s\n%s", l, void)
		}
	}

	// The next backup-push is not refused (the lock went with the session),
	// succeeds, starts and stops on one session, and restores.
	c.Exec(t, "INSERT INTO t SELECT g, 'after the void backup' FROM generate_series(20001, 21000) g")
	want := c.TableDigest(t, "t")
	logStart = logSize(t, c)
	name := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	if bs := listBackups(t, env); len(bs) != 1 || bs[0].Name != name {
		t.Fatalf("backup-list after the next backup-push: %+v (pushed %s)", bs, name)
	}
	second := logSince(t, c, logStart)
	starts, stops := statementPIDs(second, "pg_backup_start"), statementPIDs(second, "pg_backup_stop")
	if len(starts) != 1 || len(stops) != 1 || starts[0] != stops[0] {
		t.Errorf("the next backup ran pg_backup_start in sessions %v and pg_backup_stop in %v, want one and the same\n%s", starts, stops, second)
	}
	restoreAndCompare(t, env, name, want)
}

// TestBackupRefusedBesideRunningOne (TRAPS.md 15): a second backup-push
// while one runs is refused, naming the running backup's session, and the
// refusal does not disturb that backup: the first backup-push keeps its
// session from pg_backup_start to pg_backup_stop, runs to completion, is
// the one backup listed, and restores with the rows written before and
// during it.
func TestBackupRefusedBesideRunningOne(t *testing.T) {
	t.Parallel()
	c, repoDir, env, slowEnv := slowBackupCluster(t, "2MiB")

	logStart := logSize(t, c)
	cmd, stderr := startWalrus(t, slowEnv, "backup-push", c.DataDir())
	done := waitChan(t, cmd)
	waitFor(t, "a part of the slow backup in the repository", func() bool { return len(storedParts(repoDir)) > 0 })
	pid := backupSession(t, c)

	// Rows written during the backup, then the refused second backup-push.
	c.Exec(t, "INSERT INTO t SELECT g, 'during the backup' FROM generate_series(20001, 21000) g")
	want := c.TableDigest(t, "t")
	r := run(t, env, "backup-push", c.DataDir())
	if r.code == 0 || !strings.Contains(r.stderr, "another backup of this cluster is running") ||
		!strings.Contains(r.stderr, "session pid "+pid+",") || !strings.Contains(r.stderr, "walrus never stops another backup") {
		t.Fatalf("second backup-push beside a running one (session %s): exit %d\nstdout: %s\nstderr: %s", pid, r.code, r.stdout, r.stderr)
	}
	// The rows above were written before the first backup's
	// pg_backup_stop, so its restore must hold them.
	if stops := statementPIDs(logSince(t, c, logStart), "pg_backup_stop"); len(stops) != 0 {
		t.Fatalf("the first backup reached pg_backup_stop before the test had written during it and tried a second backup (too slow a machine for this test)")
	}
	if n := c.QueryRow(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = "+pid); n != "1" {
		t.Fatalf("the running backup's session %s is gone after the refusal\n%s", pid, c.LogTail(40))
	}

	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the first backup-push did not finish in 2 minutes\n%s", stderr.String())
	}
	out := stderr.String()
	if err != nil {
		t.Fatalf("the first backup-push failed after a second one was refused: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`backup-push (base_\S+): done`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line from the first backup-push:\n%s", out)
	}
	name := m[1]
	bs := listBackups(t, env)
	if len(bs) != 1 || bs[0].Name != name || bs[0].Kind != "full" {
		t.Fatalf("backup-list after the first backup-push: %+v (it pushed %s)", bs, name)
	}
	all := logSince(t, c, logStart)
	starts, stops := statementPIDs(all, "pg_backup_start"), statementPIDs(all, "pg_backup_stop")
	if len(starts) != 1 || len(stops) != 1 || starts[0] != pid || stops[0] != pid {
		t.Errorf("pg_backup_start ran in sessions %v and pg_backup_stop in %v, want both in session %s only\n%s", starts, stops, pid, all)
	}
	if strings.Contains(all, "aborting backup") || strings.Contains(all, "terminating connection") {
		t.Errorf("the server log shows a backup aborted or a session terminated:\n%s", all)
	}
	restoreAndCompare(t, env, name, want)
}

// sessionLost is how an error may say that the backup's session ended.
var sessionLost = regexp.MustCompile(`(?i)\b(session|connection)\b[^\n]*\b(lost|ended|closed|terminated|gone|died|broke|broken)\b`)

// logStatements makes c log every statement (ALTER SYSTEM, reload) and
// waits until a new session runs with it.
func logStatements(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Exec(t, "ALTER SYSTEM SET log_statement = 'all'")
	c.Exec(t, "SELECT pg_reload_conf()")
	waitFor(t, "log_statement = all in new sessions", func() bool {
		return c.QueryRow(t, "SHOW log_statement") == "all"
	})
}

// logSize is the size of c's server log: where the next lines begin.
func logSize(t *testing.T, c *pgtest.Cluster) int64 {
	t.Helper()
	fi, err := os.Stat(c.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// logSince returns c's server log from offset off on.
func logSince(t *testing.T, c *pgtest.Cluster, off int64) string {
	t.Helper()
	b, err := os.ReadFile(c.LogFile())
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < off {
		t.Fatalf("the server log shrank below %d bytes", off)
	}
	return string(b[off:])
}

// statementLine is a statement logged by log_statement = all, with the
// prefix pgtest sets ('%m [%p] %b '): simple protocol ("statement: ...")
// or extended ("execute <name>: ...").
var statementLine = regexp.MustCompile(`\[(\d+)\] [^:]*LOG:\s+(?:statement|execute [^:]*): (.*)`)

// statementPIDs returns the process ids of the sessions whose logged
// statements call function fn, in log order (one per statement).
func statementPIDs(log, fn string) []string {
	var pids []string
	for _, l := range strings.Split(log, "\n") {
		if m := statementLine.FindStringSubmatch(l); m != nil && strings.Contains(m[2], fn+"(") {
			pids = append(pids, m[1])
		}
	}
	return pids
}

// backupSession returns the pid of the one walrus session on c, the
// backup's (walrus sets application_name = walrus).
func backupSession(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	rows := c.Query(t, "SELECT pid FROM pg_stat_activity WHERE application_name = 'walrus'")
	if len(rows) != 1 {
		t.Fatalf("walrus sessions on the server: %v, want exactly one", rows)
	}
	return rows[0][0]
}

// slowBackupCluster is an archiving cluster with every statement logged
// and a table t of 20000 rows, its repository directory, the environment
// of walrus commands, and that of a backup-push slowed to rate per second,
// in 1 MiB parts uploaded one at a time (as TestBackupInterrupted).
func slowBackupCluster(t *testing.T, rate string) (c *pgtest.Cluster, repoDir string, env, slowEnv []string) {
	t.Helper()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ = archivingCluster(t, repoEnv)
	logStatements(t, c)
	c.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
	env = append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())
	slowEnv = append(append([]string{}, env...), "WALRUS_BACKUP_RATE_LIMIT="+rate, "WALRUS_PART_SIZE=1MiB", "WALRUS_UPLOAD_CONCURRENCY=1")
	return c, repoDir, env, slowEnv
}

// waitChan waits for cmd (from startWalrus) in the background; the
// channel gets its result once. If the test ends first, cmd is killed and
// reaped here, so that startWalrus's cleanup does not wait a second time.
func waitChan(t *testing.T, cmd *exec.Cmd) <-chan error {
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	return done
}

// restoreAndCompare fetches backup name with --target-immediate, starts
// it, and compares table t with want (TableDigest: rows and content).
func restoreAndCompare(t *testing.T, env []string, name, want string) {
	t.Helper()
	dest := filepath.Join(pgtest.SharedDir(t), "restored")
	mustRun(t, env, "backup-fetch", dest, name, "--target-immediate")
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 2*time.Minute)
	if got := rc.TableDigest(t, "t"); got != want {
		t.Errorf("table t restored from %s: %s, want %s (rows:md5)", name, got, want)
	}
	rc.Stop(t)
}
