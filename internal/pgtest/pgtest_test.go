package pgtest_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// waitLimit bounds the waits of these tests; it only turns a hang into a
// failure and is not a performance assertion.
const waitLimit = 2 * time.Minute

func TestClusterLifecycle(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	if !c.Running() {
		t.Fatal("Running() = false after Start")
	}

	if got := c.QueryRow(t, "SHOW data_checksums"); got != "on" {
		t.Errorf("data_checksums = %q, want on", got)
	}
	if got := c.QueryRow(t, "SHOW wal_level"); got != "replica" {
		t.Errorf("wal_level = %q, want replica", got)
	}
	if got := c.QueryRow(t, "SELECT current_setting('data_directory')"); got != c.DataDir() {
		t.Errorf("data_directory = %q, want %q", got, c.DataDir())
	}

	c.Exec(t, `CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g`)
	d1 := c.TableDigest(t, "t")
	if !strings.HasPrefix(d1, "1000:") {
		t.Errorf("digest %q does not count 1000 rows", d1)
	}
	if d2 := c.TableDigest(t, "t"); d2 != d1 {
		t.Errorf("digest changed without a change: %q then %q", d1, d2)
	}
	// The same rows in another physical order have the same digest.
	c.Exec(t, `CREATE TABLE u (id int, v text);
INSERT INTO u SELECT g, 'row ' || g FROM generate_series(1000, 1, -1) g`)
	if du := c.TableDigest(t, "u"); du != d1 {
		t.Errorf("same rows in another order: digest %q, want %q", du, d1)
	}
	c.Exec(t, "UPDATE t SET v = 'changed' WHERE id = $1", 500)
	if d3 := c.TableDigest(t, "t"); d3 == d1 {
		t.Errorf("digest %q did not change after an update", d3)
	}
	if got := c.QueryRow(t, "SELECT count(*) FROM t WHERE v = $1", "changed"); got != "1" {
		t.Errorf("count = %q, want 1", got)
	}

	all := c.AllTableDigests(t, "postgres")
	if len(all) != 2 || all["public.t"] == "" || all["public.u"] != d1 {
		t.Errorf("AllTableDigests = %v, want public.t and public.u", all)
	}

	seg := c.QueryRow(t, "SELECT pg_walfile_name(pg_switch_wal())")
	if len(seg) != 24 {
		t.Errorf("switched segment name %q", seg)
	}

	conn := c.Conn(t)
	var one int
	if err := conn.QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("Conn: SELECT 1 = %d, %v", one, err)
	}

	c.Stop(t)
	c.Stop(t) // idempotent
	if c.Running() {
		t.Fatal("Running() = true after Stop")
	}
	if _, err := os.Stat(filepath.Join(c.DataDir(), "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after Stop: %v", err)
	}
}

// TestArchiveAndAttach archives WAL into a SharedDir with a shell
// archive_command, then re-attaches the stopped data directory as a new
// cluster with extra settings.
func TestArchiveAndAttach(t *testing.T) {
	t.Parallel()
	archive := pgtest.SharedDir(t)
	c := pgtest.New(t, pgtest.Options{
		WALSegSizeMB: 1,
		Conf: []string{
			"archive_mode = on",
			"archive_command = 'test ! -f " + archive + "/%f && cp %p " + archive + "/%f && echo \"$WALRUS_MARK\" > " + archive + "/mark'",
		},
		Env: []string{"WALRUS_MARK=from-options-env"},
	})
	c.Start(t)
	if got := c.QueryRow(t, "SHOW wal_segment_size"); got != "1MB" {
		t.Errorf("wal_segment_size = %q, want 1MB", got)
	}
	pgtest.Pgbench(t, c, "-i", "-s", "1", "-q")
	pgtest.Pgbench(t, c, "-t", "50", "-c", "2")
	seg := c.QueryRow(t, "SELECT pg_walfile_name(pg_switch_wal())")
	c.WaitArchived(t, seg, waitLimit)
	if _, err := os.Stat(filepath.Join(archive, seg)); err != nil {
		t.Fatalf("archived segment: %v", err)
	}
	if mark, err := os.ReadFile(filepath.Join(archive, "mark")); err != nil || strings.TrimSpace(string(mark)) != "from-options-env" {
		t.Errorf("archive_command saw WALRUS_MARK = %q, %v; want Options.Env's value", mark, err)
	}
	before := c.AllTableDigests(t, "postgres")
	if before["public.pgbench_accounts"] == "" {
		t.Fatalf("AllTableDigests = %v, want pgbench tables", before)
	}
	c.Stop(t)

	a := pgtest.Attach(t, c.DataDir(), pgtest.Options{Conf: []string{"work_mem = '7MB'", "archive_mode = off"}})
	a.Start(t)
	if got := a.QueryRow(t, "SHOW work_mem"); got != "7MB" {
		t.Errorf("attached work_mem = %q, want 7MB", got)
	}
	after := a.AllTableDigests(t, "postgres")
	if len(after) != len(before) {
		t.Fatalf("tables after attach %v, before %v", after, before)
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("table %s: digest %q after attach, %q before", k, after[k], v)
		}
	}
	a.Stop(t)
}

func TestStartFailureReportsLog(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, pgtest.Options{Conf: []string{"shared_buffers = 'not a size'"}})
	err := c.TryStart(t)
	if err == nil {
		t.Fatal("TryStart succeeded with an invalid setting")
	}
	if !strings.Contains(err.Error(), "shared_buffers") {
		t.Fatalf("error does not quote the server log: %v", err)
	}
	if c.Running() {
		t.Fatal("Running() = true after a failed start")
	}
}

func TestRunAsPostgres(t *testing.T) {
	t.Parallel()
	out, err := pgtest.RunAsPostgres(t, "id", "-u")
	if err != nil {
		t.Fatalf("id: %v\n%s", err, out)
	}
	uid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("id -u printed %q", out)
	}
	if os.Geteuid() == 0 && uid == 0 {
		t.Fatal("running as root, but RunAsPostgres ran the command as root")
	}
	if os.Geteuid() != 0 && uid != os.Geteuid() {
		t.Fatalf("not root: command ran as uid %d, want %d", uid, os.Geteuid())
	}

	dir := pgtest.SharedDir(t)
	if out, err := pgtest.RunAsPostgres(t, "sh", "-c", "mkdir "+dir+"/sub && echo x > "+dir+"/sub/f"); err != nil {
		t.Fatalf("postgres cannot write to SharedDir: %v\n%s", err, out)
	}

	out, err = pgtest.RunAsPostgresEnv(t, []string{"WALRUS_X=1"}, "sh", "-c", `echo "$WALRUS_X|$HOME"`)
	if err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "1|") || got == "1|" {
		t.Fatalf("env seen by the command = %q, want WALRUS_X=1 and a HOME", got)
	}
}

func TestEnvDropsDeveloperSettings(t *testing.T) {
	t.Setenv("WALRUS_REPO", "/somewhere/real")
	t.Setenv("PGHOST", "elsewhere")
	for _, kv := range pgtest.Env("A=b") {
		if strings.HasPrefix(kv, "WALRUS_REPO=") || strings.HasPrefix(kv, "PGHOST=") {
			t.Errorf("Env() passes %s", kv)
		}
	}
}
