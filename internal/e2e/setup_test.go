package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
)

// walrusBin is the test binary as archive_command names it: absolute,
// symbolic links resolved.
func walrusBin(t *testing.T) string {
	t.Helper()
	bin, err := filepath.EvalSymlinks(testbin.Walrus(t))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// assertPostgresOwned checks that path has mode perm and, when the tests
// run as root, belongs to the postgres user (archive_command runs as it).
func assertPostgresOwned(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), perm)
	}
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if uid := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); uid != u.Uid {
		t.Errorf("%s: owner uid %s, want postgres (%s)", path, uid, u.Uid)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// archiveOneSegment writes WAL, switches and waits until PostgreSQL has
// archived the segment; it returns the segment's name.
func archiveOneSegment(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	// A record first, so that the switch completes a segment of its own;
	// pg_switch_wal() returns a position inside the segment it completed.
	c.Exec(t, "SELECT pg_logical_emit_message(false, 'test', 'x')")
	seg := c.QueryRow(t, "SELECT pg_walfile_name(pg_switch_wal())")
	c.WaitArchived(t, seg, time.Minute)
	if failed := c.QueryRow(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Fatalf("pg_stat_archiver.failed_count = %s\n%s", failed, c.LogTail(30))
	}
	return seg
}

// storedWAL lists the object files under wal/ of a filesystem repository.
func storedWAL(t *testing.T, repoDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoDir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestSetupStoppedCluster: setup on a stopped cluster writes the walrus
// configuration and postgresql.auto.conf; a second run changes nothing;
// the cluster then archives through walrus, and check passes. check
// reports an unreachable repository and a wrong archive_command with
// distinct messages, and setup repairs the archive_command.
func TestSetupStoppedCluster(t *testing.T) {
	t.Parallel()
	shared := pgtest.SharedDir(t)
	repoDir := filepath.Join(shared, "repo")
	cfgPath := filepath.Join(shared, "walrus.yaml")
	c := pgtest.New(t, pgtest.Options{})
	autoConf := filepath.Join(c.DataDir(), "postgresql.auto.conf")
	bin := walrusBin(t)
	setupArgs := []string{"--config", cfgPath, "setup", "--pgdata", c.DataDir(), "--repo", "file://" + repoDir}

	r := mustRun(t, nil, setupArgs...)
	wantArchive := bin + " --config " + cfgPath + " wal-push %p"
	wantRestore := bin + " --config " + cfgPath + " wal-fetch %f %p"
	for _, s := range []string{
		"wrote the walrus configuration " + cfgPath,
		"settings written to " + autoConf,
		"archive_mode: (not set) → 'on'",
		"archive_command: (not set) → '" + wantArchive + "'",
		"restore_command: (not set) → '" + wantRestore + "'",
		"created the repository directory " + repoDir,
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("setup output lacks %q:\n%s", s, r.stdout)
		}
	}
	conf := readFile(t, autoConf)
	for _, s := range []string{"archive_mode = 'on'\n", "archive_command = '" + wantArchive + "'\n", "restore_command = '" + wantRestore + "'\n"} {
		if !strings.Contains(conf, s) {
			t.Errorf("postgresql.auto.conf lacks %q:\n%s", s, conf)
		}
	}
	assertPostgresOwned(t, cfgPath, 0o600)
	assertPostgresOwned(t, repoDir, 0o700)
	cfgText := readFile(t, cfgPath)
	if !strings.Contains(cfgText, "repo: file://"+repoDir+"\n") || !strings.Contains(cfgText, "pgdata: "+c.DataDir()+"\n") {
		t.Errorf("config file:\n%s", cfgText)
	}

	// Twice: nothing changes, and setup says so.
	fiConf, _ := os.Stat(autoConf)
	fiCfg, _ := os.Stat(cfgPath)
	r = mustRun(t, nil, setupArgs...)
	if !strings.Contains(r.stdout, "nothing to change") || strings.Contains(r.stdout, "→") {
		t.Errorf("second setup:\n%s", r.stdout)
	}
	if got := readFile(t, autoConf); got != conf {
		t.Errorf("second setup changed postgresql.auto.conf:\n%s", got)
	}
	if got := readFile(t, cfgPath); got != cfgText {
		t.Errorf("second setup changed the config file:\n%s", got)
	}
	if fi, _ := os.Stat(autoConf); !fi.ModTime().Equal(fiConf.ModTime()) {
		t.Error("second setup rewrote postgresql.auto.conf")
	}
	if fi, _ := os.Stat(cfgPath); !fi.ModTime().Equal(fiCfg.ModTime()) {
		t.Error("second setup rewrote the config file")
	}

	// The configured cluster archives through walrus.
	c.Start(t)
	seg := archiveOneSegment(t, c)
	if !strings.Contains(strings.Join(storedWAL(t, repoDir), " "), seg+".lz4") {
		t.Fatalf("segment %s not in the repository: %v", seg, storedWAL(t, repoDir))
	}

	env := []string{"WALRUS_POSTGRES_DSN=" + c.DSN()}
	r = mustRun(t, env, "--config", cfgPath, "check")
	if !strings.Contains(r.stdout, "check passed") || !strings.Contains(r.stdout, "arrived in the repository") {
		t.Errorf("check:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(repoDir, "check")); !os.IsNotExist(err) {
		t.Errorf("check left its probe behind: %v", err)
	}
	if !strings.Contains(r.stdout, "ok    locks            no backup-push, backup-mark or delete is running") {
		t.Errorf("check does not report the repository's locks:\n%s", r.stdout)
	}
	// A lock that a killed backup-push on another host left an hour ago
	// is reported as stale, a warning only.
	lockPath := filepath.Join(repoDir, "locks", "shared-20260101T000000.000000000Z-0123456789ab.json")
	old := time.Now().Add(-time.Hour).UTC()
	body := fmt.Sprintf(`{"mode":"shared","command":"backup-push","host":"elsewhere","pid":4242,"started":%q,"refreshed":%q}`, old.Format(time.RFC3339), old.Format(time.RFC3339))
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	writeShared(t, filepath.Dir(lockPath), filepath.Base(lockPath), body)
	if err := os.Chtimes(lockPath, old, old); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, env, "--config", cfgPath, "check")
	if !strings.Contains(r.stdout, "WARN  locks            stale lock of a command that is gone: backup-push (shared lock locks/shared-20260101T000000.000000000Z-0123456789ab.json, host elsewhere, pid 4242") {
		t.Errorf("check does not report the stale lock:\n%s", r.stdout)
	}
	// The same report for a script: passed, with the stale lock a warning.
	r = mustRun(t, env, "--config", cfgPath, "check", "--json")
	var checked checkJSON
	if err := json.Unmarshal([]byte(r.stdout), &checked); err != nil {
		t.Fatalf("check --json is not JSON: %v\n%s", err, r.stdout)
	}
	if !checked.Passed || checked.Failures != 0 || checked.Warnings < 1 ||
		checked.status("locks") != "warn" || checked.status("WAL switch") != "ok" {
		t.Errorf("check --json: want passed with the locks step a warning and the WAL switch ok:\n%s", r.stdout)
	}
	lockKey := "locks/" + filepath.Base(lockPath)
	r = mustRun(t, env, "--config", cfgPath, "locks", "--json")
	var listed struct {
		Locks []struct {
			Key     string `json:"key"`
			Command string `json:"command"`
			Stale   bool   `json:"stale"`
		} `json:"locks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed.Locks) != 1 ||
		listed.Locks[0].Key != lockKey || listed.Locks[0].Command != "backup-push" || !listed.Locks[0].Stale {
		t.Fatalf("locks --json: %v\n%s", err, r.stdout)
	}
	// The same lock refreshed just now looks held: unlock refuses it
	// without --force, says so, and leaves it; --force removes it.
	now := time.Now().UTC()
	body = fmt.Sprintf(`{"mode":"exclusive","command":"delete","host":"elsewhere","pid":4242,"started":%q,"refreshed":%q}`, now.Format(time.RFC3339), now.Format(time.RFC3339))
	writeShared(t, filepath.Dir(lockPath), filepath.Base(lockPath), body)
	r = mustRun(t, env, "--config", cfgPath, "locks")
	if !strings.Contains(r.stdout, lockKey) || !strings.Contains(r.stdout, "delete") || !strings.Contains(r.stdout, "held") {
		t.Errorf("locks:\n%s", r.stdout)
	}
	r = run(t, env, "--config", cfgPath, "unlock", lockKey)
	if r.code == 0 || !strings.Contains(r.stderr, "is not stale") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("unlock of a live lock: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(lockPath); err != nil {
		t.Fatalf("unlock without --force removed a live lock: %v", err)
	}
	r = run(t, env, "--config", cfgPath, "unlock", "locks/../walrus.json", "--force")
	if r.code != 2 || !strings.Contains(r.stderr, "not the name of a lock object") {
		t.Fatalf("unlock of a path outside locks/: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(repoDir, "walrus.json")); err != nil {
		t.Fatalf("unlock touched walrus.json: %v", err)
	}
	mustRun(t, env, "--config", cfgPath, "unlock", lockKey, "--force")
	if _, err := os.Stat(lockPath); !os.IsNotExist(err) {
		t.Fatalf("unlock --force left the lock: %v", err)
	}

	t.Run("unreachable repository", func(t *testing.T) {
		bad := append(append([]string{}, env...), "WALRUS_REPO=s3://bucket/prefix", "WALRUS_S3_ENDPOINT=http://127.0.0.1:1",
			"WALRUS_S3_FORCE_PATH_STYLE=true", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_REGION=us-east-1")
		r := run(t, bad, "--config", cfgPath, "check", "--timeout", "3s")
		if r.code == 0 {
			t.Fatalf("check passed with an unreachable repository:\n%s", r.stdout)
		}
		if !strings.Contains(r.stdout, "FAIL  repository       repository s3://bucket/prefix unreachable") {
			t.Errorf("no repository failure:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout, "wrong archive_command") {
			t.Errorf("an unreachable repository is reported as a wrong archive_command:\n%s", r.stdout)
		}
	})

	t.Run("wrong archive_command", func(t *testing.T) {
		c.Exec(t, "ALTER SYSTEM SET archive_command = '/bin/true'")
		c.Exec(t, "SELECT pg_reload_conf()")
		waitFor(t, "archive_command = /bin/true", func() bool { return c.QueryRow(t, "SHOW archive_command") == "/bin/true" })
		r := run(t, env, "--config", cfgPath, "check")
		if r.code == 0 {
			t.Fatalf("check passed with archive_command = /bin/true:\n%s", r.stdout)
		}
		if !strings.Contains(r.stdout, "FAIL  archive_command  wrong archive_command: archive_command = '/bin/true' does not run walrus wal-push") {
			t.Errorf("no archive_command failure:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout, "unreachable") {
			t.Errorf("a wrong archive_command is reported as an unreachable repository:\n%s", r.stdout)
		}
		r = run(t, env, "--config", cfgPath, "check", "--json")
		var checked checkJSON
		if err := json.Unmarshal([]byte(r.stdout), &checked); err != nil {
			t.Fatalf("check --json is not JSON: %v\n%s", err, r.stdout)
		}
		if r.code != 1 || checked.Passed || checked.Failures < 1 || checked.status("archive_command") != "fail" ||
			!strings.Contains(checked.fix("archive_command"), "wal-push") {
			t.Errorf("check --json with archive_command = /bin/true: exit %d, want 1 and the archive_command step failed with a fix naming wal-push:\n%s", r.code, r.stdout)
		}

		// setup puts it right, with a reload.
		r = mustRun(t, env, "--config", cfgPath, "setup", "--pgdata", c.DataDir())
		if !strings.Contains(r.stdout, "archive_command: '/bin/true' → '"+wantArchive+"' (reload)") || !strings.Contains(r.stdout, "reloaded the configuration") {
			t.Errorf("setup:\n%s", r.stdout)
		}
		waitFor(t, "archive_command restored", func() bool { return c.QueryRow(t, "SHOW archive_command") == wantArchive })
		mustRun(t, env, "--config", cfgPath, "check")
	})
}

// TestSetupRunningCluster: setup on a running cluster, with the default
// configuration path and a generated encryption key, uses ALTER SYSTEM:
// archive_command takes effect at once (reload), archive_mode after the
// restart setup asks for; then the cluster archives encrypted objects and
// check passes.
func TestSetupRunningCluster(t *testing.T) {
	t.Parallel()
	repoDir := filepath.Join(pgtest.SharedDir(t), "repo")
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	env := []string{"WALRUS_POSTGRES_DSN=" + c.DSN()}
	cfgPath := filepath.Join(filepath.Dir(c.DataDir()), "walrus-"+filepath.Base(c.DataDir())+".yaml")
	keyPath := strings.TrimSuffix(cfgPath, ".yaml") + ".age.key"
	wantArchive := walrusBin(t) + " --config " + cfgPath + " wal-push %p"
	setupArgs := []string{"setup", "--pgdata", c.DataDir(), "--repo", repoDir, "--compression", "zstd", "--encrypt"}

	r := mustRun(t, env, setupArgs...)
	for _, s := range []string{
		"wrote the walrus configuration " + cfgPath,
		"generated the age identity " + keyPath,
		"COPY " + keyPath + " SOMEWHERE SAFE",
		"settings changed with ALTER SYSTEM",
		"archive_mode: 'off' → 'on' (restart)",
		"archive_command: (not set) → '" + wantArchive + "' (reload)",
		"reloaded the configuration",
		"RESTART NEEDED: the server still runs with the old archive_mode",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("setup output lacks %q:\n%s", s, r.stdout)
		}
	}
	assertPostgresOwned(t, cfgPath, 0o600)
	assertPostgresOwned(t, keyPath, 0o600)
	cfgText := readFile(t, cfgPath)
	for _, s := range []string{"repo: " + repoDir, "compression: zstd", "identity_file: " + keyPath, "- age1", "postgres:\n  dsn: "} {
		if !strings.Contains(cfgText, s) {
			t.Errorf("config file lacks %q:\n%s", s, cfgText)
		}
	}
	// The reload applies archive_command; archive_mode waits for the
	// restart.
	// (SHOW says "(disabled)" while archive_mode is off.)
	waitFor(t, "archive_command reloaded", func() bool {
		return c.QueryRow(t, "SELECT applied FROM pg_file_settings WHERE name = 'archive_command' ORDER BY seqno DESC LIMIT 1") == "t"
	})
	if mode := c.QueryRow(t, "SHOW archive_mode"); mode != "off" {
		t.Fatalf("archive_mode = %s before the restart", mode)
	}

	// Again before the restart: nothing to change, the restart still due.
	r = mustRun(t, env, setupArgs...)
	if !strings.Contains(r.stdout, "nothing to change") || strings.Contains(r.stdout, "→") || !strings.Contains(r.stdout, "RESTART NEEDED") {
		t.Errorf("second setup:\n%s", r.stdout)
	}

	// check names the pending restart, and nothing else.
	r = run(t, env, "--config", cfgPath, "check")
	if r.code == 0 || !strings.Contains(r.stdout, "FAIL  archive_mode     archive_mode = off: the configured value takes effect only after a restart") ||
		!strings.Contains(r.stdout, "fix: restart PostgreSQL") || strings.Count(r.stdout, "FAIL  ") != 1 {
		t.Errorf("check before the restart: exit %d\n%s", r.code, r.stdout)
	}

	c.Restart(t)
	env = []string{"WALRUS_POSTGRES_DSN=" + c.DSN()}
	seg := archiveOneSegment(t, c)
	if !strings.Contains(strings.Join(storedWAL(t, repoDir), " "), seg+".zst.age") {
		t.Fatalf("segment %s not stored encrypted: %v", seg, storedWAL(t, repoDir))
	}
	r = mustRun(t, env, setupArgs...)
	if !strings.Contains(r.stdout, "nothing to change") || strings.Contains(r.stdout, "RESTART NEEDED") {
		t.Errorf("setup after the restart:\n%s", r.stdout)
	}
	r = mustRun(t, env, "--config", cfgPath, "check")
	if !strings.Contains(r.stdout, "ok    encryption") || !strings.Contains(r.stdout, "check passed") {
		t.Errorf("check:\n%s", r.stdout)
	}
}

// checkJSON is what check --json prints.
type checkJSON struct {
	Passed   bool `json:"passed"`
	Failures int  `json:"failures"`
	Warnings int  `json:"warnings"`
	Findings []struct {
		Step    string `json:"step"`
		Status  string `json:"status"`
		Message string `json:"message"`
		Fix     string `json:"fix"`
	} `json:"findings"`
}

// status is the status of the step's first finding, "" when it has none.
func (c checkJSON) status(step string) string {
	for _, f := range c.Findings {
		if f.Step == step {
			return f.Status
		}
	}
	return ""
}

// fix is the fix of the step's first finding.
func (c checkJSON) fix(step string) string {
	for _, f := range c.Findings {
		if f.Step == step {
			return f.Fix
		}
	}
	return ""
}
