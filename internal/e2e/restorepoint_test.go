package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// TestRestorePoints is issue 5's journey: backup B1; batch A; restore
// point rp1; batch B; backup B2; batch C. Restores to rp1, to a time
// between B and C, to rp1's LSN and to the latest point each yield exactly
// the batches before the target, and walrus picks the backup by itself.
func TestRestorePoints(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())
	shared := pgtest.SharedDir(t)

	c.Exec(t, "CREATE TABLE journal (batch text, n int)")
	insert := func(batch string) {
		c.Exec(t, fmt.Sprintf("INSERT INTO journal SELECT '%s', g FROM generate_series(1, 1000) g", batch))
	}
	b1 := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	insert("A")
	r := mustRun(t, env, "create-restore-point", "rp1")
	rp1LSN := strings.TrimSpace(r.stdout)
	if !strings.Contains(rp1LSN, "/") {
		t.Fatalf("create-restore-point printed %q", r.stdout)
	}
	insert("B")
	b2 := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	time.Sleep(1100 * time.Millisecond)
	between := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond)
	insert("C")
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 60*time.Second)

	// restore-point-list shows rp1 and the backup it restores from.
	list := mustRun(t, env, "restore-point-list", "--json").stdout
	if !strings.Contains(list, `"name": "rp1"`) || !strings.Contains(list, `"lsn": "`+rp1LSN+`"`) || !strings.Contains(list, b1) {
		t.Errorf("restore-point-list --json:\n%s", list)
	}

	restore := func(t *testing.T, wantBackup string, args ...string) []string {
		t.Helper()
		dest := filepath.Join(shared, fmt.Sprintf("restore-%d", time.Now().UnixNano()))
		r := mustRun(t, repoEnv, append([]string{"backup-fetch", dest}, args...)...)
		if !strings.Contains(r.stdout+r.stderr, wantBackup) {
			t.Errorf("backup-fetch did not say it chose %s:\n%s%s", wantBackup, r.stdout, r.stderr)
		}
		rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
		rc.Start(t)
		rc.WaitPromoted(t, 120*time.Second)
		rows := rc.Query(t, "SELECT batch || ':' || count(*) FROM journal GROUP BY batch ORDER BY batch")
		rc.Stop(t)
		var out []string
		for _, row := range rows {
			out = append(out, row[0])
		}
		return out
	}
	check := func(t *testing.T, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("restored batches %v, want %v", got, want)
		}
	}

	t.Run("restore point picks B1", func(t *testing.T) {
		check(t, restore(t, b1, "--restore-point", "rp1"), "A:1000")
	})
	t.Run("time between B and C picks B2", func(t *testing.T) {
		check(t, restore(t, b2, "--target-time", between.Format("2006-01-02 15:04:05.999999+00")), "A:1000", "B:1000")
	})
	t.Run("LSN of rp1", func(t *testing.T) {
		check(t, restore(t, b1, "LATEST", "--target-lsn", rp1LSN), "A:1000")
	})
	t.Run("latest", func(t *testing.T) {
		check(t, restore(t, b2), "A:1000", "B:1000", "C:1000")
	})

	// Errors: each is clear and leaves DEST untouched.
	refuse := func(t *testing.T, want string, args ...string) {
		t.Helper()
		dest := filepath.Join(shared, fmt.Sprintf("refused-%d", time.Now().UnixNano()))
		r := run(t, repoEnv, append([]string{"backup-fetch", dest}, args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("backup-fetch %v: exit %d, want an error mentioning %q:\n%s", args, r.code, want, r.stderr)
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Fatalf("backup-fetch %v created %s", args, dest)
		}
	}
	t.Run("unknown restore point", func(t *testing.T) {
		refuse(t, `"nope"`, "--restore-point", "nope")
	})
	t.Run("duplicate name", func(t *testing.T) {
		r := run(t, env, "create-restore-point", "rp1")
		if r.code == 0 || !strings.Contains(r.stderr, "already exists") {
			t.Fatalf("duplicate restore point: exit %d\n%s", r.code, r.stderr)
		}
	})
	t.Run("bad name is refused before anything happens", func(t *testing.T) {
		r := run(t, env, "create-restore-point", "../evil")
		if r.code == 0 || !strings.Contains(r.stderr, "restore point name") {
			t.Fatalf("bad name: exit %d\n%s", r.code, r.stderr)
		}
	})
	t.Run("target before the oldest backup", func(t *testing.T) {
		refuse(t, "oldest backup", "--target-time", "2000-01-01 00:00:00+00")
	})
	t.Run("missing WAL between backup and target", func(t *testing.T) {
		// Remove the segment holding rp1: B1 cannot reach rp1.
		seg := c.QueryRow(t, "SELECT pg_walfile_name($1::pg_lsn)", rp1LSN)
		matches, _ := filepath.Glob(filepath.Join(repoDir, "wal", seg+".*"))
		if len(matches) != 1 {
			t.Fatalf("segment %s in the repository: %v", seg, matches)
		}
		hidden := matches[0] + ".hidden-by-test"
		if err := os.Rename(matches[0], filepath.Join(filepath.Dir(matches[0]), "."+filepath.Base(hidden))); err != nil {
			t.Fatal(err)
		}
		refuse(t, seg, "--restore-point", "rp1")
	})
}
