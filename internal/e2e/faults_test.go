package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/faultproxy"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
)

// TestJourneyUnderFaults is issue 8's journey under transient faults: the
// S3 server sits behind a proxy that injects a fault into about one
// request in ten (503 SlowDown, resets while a body arrives or leaves,
// truncated and lost responses, delays), at most two in a row per
// request, for every walrus process: archive_command, backup-push (a full
// backup, then a delta), create-restore-point, the listings, backup-fetch
// and the restore_command of the restored cluster. archive_command never
// fails, and the restore to the restore point holds exactly the data the
// source held there. Then, with every request answered 403 AccessDenied,
// each command fails at once with its exit status (wal-fetch 128, the
// others 1) and a message naming the cause.
func TestJourneyUnderFaults(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault proxy seed %d", seed)
	proxy := faultproxy.Start(t, srv.Endpoint, faultproxy.Options{Seed: seed, Rate: 0.1, MaxInARow: 2})
	t.Cleanup(func() { countFaults(proxy) })

	keys := pgtest.SharedDir(t)
	identity := filepath.Join(keys, "age.key")
	recipient := strings.TrimSpace(mustRun(t, nil, "keygen", "--output", identity).stdout)
	pgtest.ChownPostgres(t, keys)
	env := append(srv.Env(bucket),
		"WALRUS_S3_ENDPOINT="+proxy.URL(),
		"WALRUS_AGE_RECIPIENTS="+recipient,
		"WALRUS_AGE_IDENTITY_FILE="+identity,
		"WALRUS_COMPRESSION=zstd",
		// Small parts: many uploads, so that faults meet them.
		"WALRUS_PART_SIZE=1MiB",
		"WALRUS_UPLOAD_CONCURRENCY=3",
		"WALRUS_DOWNLOAD_CONCURRENCY=3",
		// Quick retries: the test waits less.
		"WALRUS_RETRY_CALL_TIMEOUT=10s",
	)
	c, _ := archivingCluster(t, env)
	env = append(env, "WALRUS_POSTGRES_DSN="+c.DSN())

	c.Exec(t, "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint, note text)")
	c.Exec(t, "INSERT INTO accounts SELECT g, g * 10, md5(g::text) FROM generate_series(1, 60000) g")
	full := strings.TrimSpace(mustRun(t, env, "backup-push", "--full", c.DataDir()).stdout)

	c.Exec(t, "UPDATE accounts SET balance = balance + 1 WHERE id % 17 = 0")
	c.Exec(t, "CREATE TABLE ledger AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	delta := mustRun(t, env, "backup-push", c.DataDir())
	deltaName := strings.TrimSpace(delta.stdout)
	if !strings.Contains(delta.stderr, "a delta of "+full) {
		t.Errorf("the second backup-push is not a delta of %s:\n%s", full, delta.stderr)
	}

	c.Exec(t, "DELETE FROM accounts WHERE id % 5 = 0")
	c.Exec(t, "INSERT INTO ledger SELECT g, 'after delta' FROM generate_series(20001, 25000) g")
	mustRun(t, env, "create-restore-point", "under-faults")
	want := c.AllTableDigests(t, "postgres")

	c.Exec(t, "TRUNCATE ledger")
	c.Exec(t, "UPDATE accounts SET note = 'after the restore point'")
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 2*time.Minute)
	if failed := c.QueryRow(t, "SELECT failed_count FROM pg_stat_archiver"); failed != "0" {
		t.Errorf("archive_command failed %s times under transient faults:\n%s", failed, grepLines(c.LogTail(300), "wal-push"))
	}

	bs := listBackups(t, env)
	if len(bs) != 2 || bs[0].Name != full || bs[1].Name != deltaName || bs[1].Kind != "delta" {
		t.Fatalf("backup-list under faults: %+v", bs)
	}
	mustRun(t, env, "restore-point-list")
	mustRun(t, env, "wal-verify")

	dest := filepath.Join(pgtest.SharedDir(t), "restored")
	r := mustRun(t, env, "backup-fetch", dest, "--restore-point", "under-faults")
	if !strings.Contains(r.stdout, deltaName) {
		t.Errorf("backup-fetch chose %q, want the delta %s", r.stdout, deltaName)
	}
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 3*time.Minute)
	if got := rc.AllTableDigests(t, "postgres"); !reflect.DeepEqual(got, want) {
		t.Errorf("restore to the restore point under faults differs from the source:\n%s", diffDigests(got, want))
	}
	rc.Stop(t)
	if proxy.Faults() == 0 {
		t.Fatalf("the proxy injected no fault in %d requests", proxy.Requests())
	}
	var kinds []string
	for _, k := range faultproxy.Transient {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, proxy.FaultsOf(k)))
	}
	t.Logf("%d requests, %d faults injected (%s)", proxy.Requests(), proxy.Faults(), strings.Join(kinds, ", "))

	t.Run("permanent faults", func(t *testing.T) {
		deny := faultproxy.Start(t, srv.Endpoint, faultproxy.Options{Rate: 1, Kinds: []faultproxy.Kind{faultproxy.ErrorResponse}, Status: 403, Code: "AccessDenied"})
		t.Cleanup(func() { countFaults(deny) })
		denied := append(append([]string{}, env...), "WALRUS_S3_ENDPOINT="+deny.URL())
		seg := filepath.Join(c.DataDir(), "pg_wal", c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())"))
		shared := pgtest.SharedDir(t)
		for _, tc := range []struct {
			args []string
			code int
		}{
			{[]string{"wal-push", seg}, 1},
			{[]string{"wal-fetch", last, filepath.Join(shared, "RECOVERYXLOG")}, 128},
			{[]string{"backup-push", c.DataDir()}, 1},
			{[]string{"backup-list"}, 1},
			{[]string{"backup-fetch", filepath.Join(shared, "denied"), "LATEST"}, 1},
			{[]string{"create-restore-point", "denied"}, 1},
			{[]string{"restore-point-list"}, 1},
			{[]string{"wal-verify"}, 1},
			{[]string{"check", "--timeout", "10s"}, 1},
		} {
			r := run(t, denied, tc.args...)
			// A HEAD answer has no body, so no S3 error code: the
			// status says it.
			out := r.stdout + r.stderr
			named := strings.Contains(out, "AccessDenied") || strings.Contains(out, "StatusCode: 403")
			if r.code != tc.code || !named {
				t.Errorf("walrus %s with every request denied: exit %d, want %d and a message naming AccessDenied or 403:\n%s%s",
					tc.args[0], r.code, tc.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stderr, "gave up after") {
				t.Errorf("walrus %s retried a permanent failure:\n%s", tc.args[0], r.stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(shared, "denied")); !os.IsNotExist(err) {
			t.Errorf("backup-fetch with every request denied created its destination")
		}
		if _, err := os.Stat(filepath.Join(shared, "RECOVERYXLOG")); !os.IsNotExist(err) {
			t.Errorf("wal-fetch with every request denied wrote its destination")
		}
	})
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
