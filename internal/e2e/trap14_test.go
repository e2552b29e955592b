package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// walMissingTimeouts bound the backup-push whose WAL never reaches the
// repository: backup_wal_timeout bounds the wait for the WAL alone;
// command_timeout the whole command, so it must leave time for the copy of
// a small cluster on a loaded machine. Short enough that the test does not
// wait minutes.
var walMissingTimeouts = map[string]time.Duration{
	"WALRUS_BACKUP_WAL_TIMEOUT": 15 * time.Second,
	"WALRUS_COMMAND_TIMEOUT":    45 * time.Second,
}

// walNamed is how an error names a WAL segment it waited for: "WAL
// <segment>" (the backup's name holds its start segment too, after an
// underscore, so that alone does not count).
var walNamed = regexp.MustCompile(`\bWAL ([0-9A-F]{24})\b`)

// TestBackupPushWALNeverArchived (TRAPS.md 14): a backup counts as
// complete only once the WAL from its start to its stop segment is in the
// archive. The repository exists (walrus.json, WAL archived by walrus),
// then archive_command is switched to one that always fails ('false'), as
// an operator's broken archive_command would. backup-push, bounded by
// backup_wal_timeout or by command_timeout (one subtest each: the wait
// ends on its own, or the command's context ends it), must then fail nonzero with an ERROR line that names
// the backup's missing start segment (absent from the repository) and
// points at archive_command; afterwards backup-list --json lists nothing,
// the repository holds no manifest and no part under backups/, and the
// server has no backup left open: pg_backup_stop ran in the backup's own
// session (log_statement = all), the server never aborted a backup, and no
// walrus session remains. With archive_command fixed back to walrus
// wal-push, the next backup-push succeeds, is the one backup listed, and
// restores (--target-immediate) with table t equal to the source.
func TestBackupPushWALNeverArchived(t *testing.T) {
	t.Parallel()
	for _, bound := range []string{"WALRUS_BACKUP_WAL_TIMEOUT", "WALRUS_COMMAND_TIMEOUT"} {
		t.Run(bound, func(t *testing.T) {
			t.Parallel()
			testBackupPushWALNeverArchived(t, bound)
		})
	}
}

// testBackupPushWALNeverArchived is TestBackupPushWALNeverArchived with
// the wait bounded by the environment variable bound.
func testBackupPushWALNeverArchived(t *testing.T, bound string) {
	walMissingTimeout := walMissingTimeouts[bound]
	repoEnv, repoDir := storages[0].setup(t)
	c, wrapper := archivingCluster(t, repoEnv)
	logStatements(t, c)
	c.Exec(t, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 10000) g")
	want := c.TableDigest(t, "t")
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())

	// The repository exists: walrus.json and WAL pushed by archive_command.
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 2*time.Minute)
	if _, err := os.Stat(filepath.Join(repoDir, "walrus.json")); err != nil {
		t.Fatalf("the repository has no walrus.json after wal-push: %v", err)
	}

	// Now every archive_command fails.
	c.Exec(t, "ALTER SYSTEM SET archive_command = 'false'")
	c.Exec(t, "SELECT pg_reload_conf()")
	waitFor(t, "archive_command = false", func() bool { return c.QueryRow(t, "SHOW archive_command") == "false" })

	logStart := logSize(t, c)
	failEnv := append(append([]string{}, env...), bound+"="+walMissingTimeout.String())
	cmd, stderr := startWalrus(t, failEnv, "backup-push", "--verbose", c.DataDir())
	done := waitChan(t, cmd)
	var err error
	select {
	case err = <-done:
	case <-time.After(walMissingTimeout + 3*time.Minute):
		t.Fatalf("backup-push still runs %v after it started, with %s=%v and its WAL never archived\n%s",
			walMissingTimeout+3*time.Minute, bound, walMissingTimeout, stderr.String())
	}
	out := stderr.String()
	if err == nil {
		t.Fatalf("backup-push succeeded although archive_command fails and its WAL never reached the repository\n%s\nserver log:\n%s", out, c.LogTail(40))
	}
	t.Logf("backup-push with its WAL never archived: %v\n%s", err, out)
	if !strings.Contains(out, ": pg_backup_stop") {
		t.Fatalf("backup-push failed before pg_backup_stop (%s=%v too short for the copy on this machine?), so this test checked nothing about the WAL:\n%s", bound, walMissingTimeout, out)
	}
	var failure strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ERROR:") {
			failure.WriteString(l + "\n")
		}
	}
	m := regexp.MustCompile(`backup-push (base_\S+?_([0-9A-F]{24})):`).FindStringSubmatch(failure.String())
	if m == nil {
		t.Fatalf("the ERROR line does not name the backup:\n%s", out)
	}
	failedName, startSeg := m[1], m[2]
	if n := walNamed.FindStringSubmatch(failure.String()); n == nil {
		t.Errorf("the ERROR line names no missing WAL segment (want WAL %s):\n%s", startSeg, out)
	} else {
		if n[1] != startSeg {
			t.Errorf("the ERROR line names WAL %s, want the backup's start segment %s (the first one missing):\n%s", n[1], startSeg, out)
		}
		if found, _ := filepath.Glob(filepath.Join(repoDir, "wal", n[1]+"*")); len(found) != 0 {
			t.Errorf("the ERROR line names WAL %s as missing, but the repository holds %v", n[1], found)
		}
	}
	if !strings.Contains(failure.String(), "archive_command is failing") {
		// Also with command_timeout ending the wait, the archiver's
		// failure (pg.ArchiverFailure) must be reported, not dropped with
		// the cancelled context.
		t.Errorf("the ERROR line does not say that archive_command is failing, although PostgreSQL's archiver is:\n%s", out)
	}
	// The scenario was real: PostgreSQL's archiver did fail.
	if n := c.QueryRow(t, "SELECT failed_count FROM pg_stat_archiver"); n == "0" {
		t.Fatalf("pg_stat_archiver shows no failure: archive_command = 'false' did not take effect")
	}

	// Nothing of the failed backup is listed or stored.
	if bs := listBackups(t, env); len(bs) != 0 {
		t.Fatalf("backup-list after backup-push failed for lack of WAL: %+v", bs)
	}
	var stored []string
	filepath.Walk(filepath.Join(repoDir, "backups"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			stored = append(stored, p)
		}
		return nil
	})
	for _, p := range stored {
		if strings.HasPrefix(filepath.Base(p), "manifest") {
			t.Errorf("a manifest of the failed backup %s is in the repository: %s", failedName, p)
		}
	}
	if parts := storedParts(repoDir); len(parts) != 0 {
		t.Errorf("parts left by the failed backup %s: %v", failedName, parts)
	}

	// No backup is left open on the server: pg_backup_stop ran in the
	// backup's own session, which has ended, and nothing was aborted.
	waitFor(t, "no walrus session on the server", func() bool {
		return c.QueryRow(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walrus'") == "0"
	})
	failedLog := logSince(t, c, logStart)
	starts, stops := statementPIDs(failedLog, "pg_backup_start"), statementPIDs(failedLog, "pg_backup_stop")
	if len(starts) != 1 || len(stops) != 1 || starts[0] != stops[0] {
		t.Errorf("the failed backup ran pg_backup_start in sessions %v and pg_backup_stop in %v, want one each in the same session\n%s", starts, stops, failedLog)
	}
	if strings.Contains(failedLog, "aborting backup due to backend exiting before pg_backup_stop was called") {
		t.Errorf("the server aborted the failed backup instead of it being stopped:\n%s", failedLog)
	}

	// archive_command fixed: the missing WAL reaches the repository, and
	// the next backup-push succeeds, is listed and restores.
	c.Exec(t, fmt.Sprintf("ALTER SYSTEM SET archive_command = '%s wal-push %%p'", wrapper))
	c.Exec(t, "SELECT pg_reload_conf()")
	waitForArchived(t, c, startSeg, 3*time.Minute)
	c.Exec(t, "INSERT INTO t SELECT g, 'after the failed backup' FROM generate_series(10001, 11000) g")
	want = c.TableDigest(t, "t")
	push := mustRun(t, env, "backup-push", c.DataDir())
	name := strings.TrimSpace(push.stdout)
	if !strings.HasPrefix(name, "base_") || name == failedName {
		t.Fatalf("backup-push after archive_command was fixed printed %q\n%s", push.stdout, push.stderr)
	}
	if bs := listBackups(t, env); len(bs) != 1 || bs[0].Name != name {
		t.Fatalf("backup-list after the successful backup-push: %+v (pushed %s)", bs, name)
	}
	if _, err := os.Stat(filepath.Join(repoDir, "backups", name, "manifest.json")); err != nil {
		t.Errorf("the successful backup has no manifest in the repository: %v", err)
	}
	restoreAndCompare(t, env, name, want)
}

// waitForArchived waits until pg_stat_archiver's last archived WAL is seg
// or later. Unlike Cluster.WaitArchived it tolerates the failures recorded
// before archive_command was fixed.
func waitForArchived(t *testing.T, c *pgtest.Cluster, seg string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := c.QueryRow(t, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if len(got) >= len(seg) && got[:len(seg)] >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not archived %v after archive_command was fixed (last archived %q)\n%s", seg, timeout, got, c.LogTail(40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
