package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// deltaListed is what backup-list --json says about a backup's chain.
type deltaListed struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind"`
	DeltaFrom  *string `json:"delta_from"`
	DeltaRoot  *string `json:"delta_root"`
	DataSize   int64   `json:"data_size"`
	StoredSize int64   `json:"stored_size"`
	DeltaSize  int64   `json:"delta_size"`
}

func listChain(t *testing.T, env []string) map[string]deltaListed {
	t.Helper()
	out := mustRun(t, env, "backup-list", "--json").stdout
	var doc struct {
		Backups []deltaListed `json:"backups"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, out)
	}
	m := map[string]deltaListed{}
	for _, b := range doc.Backups {
		m[b.Name] = b
	}
	return m
}

// updateOnePercent adds its first argument to one row's balance on every
// hundredth page of pgbench_accounts, from the page its second argument
// says: 1% of the pages.
const updateOnePercent = `UPDATE pgbench_accounts SET abalance = abalance + %d
WHERE ((ctid::text::point)[0]::int + %d) %% 100 = 0 AND (ctid::text::point)[1] = 1`

// TestDeltaChain is issue 4's journey on a real cluster: a full backup of
// a pgbench database, then changes (1% of pages updated, DROP TABLE,
// TRUNCATE, VACUUM FULL, CREATE TABLE) and a delta, more changes (another
// 1%, a table shrunk by VACUUM, growth, DROP, CREATE) and a delta of the
// delta. Nothing writes during a backup, so each table's content right
// after backup-push is what a restore with --target-immediate must give.
// Both deltas are restored and compared, and checked with pg_checksums; a
// delta is far smaller than the full backup; a missing link of the chain
// is named before anything is written.
func TestDeltaChain(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	c, _ := archivingCluster(t, repoEnv)
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN(), "WALRUS_PART_SIZE=4MiB", "WALRUS_UPLOAD_CONCURRENCY=2")

	pgtest.Pgbench(t, c, "-i", "-s", "5", "-q")
	for _, table := range []string{"drop_me", "trunc_me", "vacfull_me", "shrink_me", "grow_me"} {
		c.Exec(t, "CREATE TABLE "+table+" AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g")
	}
	c.Exec(t, "CREATE INDEX ON grow_me (id)")
	// Hint bits and the visibility map set now, so that reading the
	// tables later does not give every page a new LSN.
	c.Exec(t, "VACUUM (FREEZE, ANALYZE)")

	push := func(wantKind, wantFrom string) (string, map[string]string) {
		t.Helper()
		r := mustRun(t, env, "backup-push", c.DataDir())
		digests := c.AllTableDigests(t, "postgres") // nothing wrote since pg_backup_stop
		name := strings.TrimSpace(r.stdout)
		b := listChain(t, env)[name]
		if b.Kind != wantKind || (wantFrom == "" && b.DeltaFrom != nil) || (wantFrom != "" && (b.DeltaFrom == nil || *b.DeltaFrom != wantFrom)) {
			t.Fatalf("backup-push gave %+v, want a %s from %q\n%s", b, wantKind, wantFrom, r.stderr)
		}
		if wantFrom != "" && !strings.Contains(r.stderr, "a delta of "+wantFrom) {
			t.Errorf("backup-push does not say what the delta is based on:\n%s", r.stderr)
		}
		return name, digests
	}

	full, _ := push("full", "")
	c.Exec(t, fmt.Sprintf(updateOnePercent, 1, 0))
	c.Exec(t, "DROP TABLE drop_me")
	c.Exec(t, "TRUNCATE trunc_me")
	c.Exec(t, "INSERT INTO trunc_me VALUES (1, 'after truncate')")
	c.Exec(t, "VACUUM FULL vacfull_me")
	c.Exec(t, "CREATE TABLE created_1 AS SELECT g AS id FROM generate_series(1, 3000) g")
	d1, want1 := push("delta", full)

	c.Exec(t, fmt.Sprintf(updateOnePercent, 7, 50))
	c.Exec(t, "DELETE FROM shrink_me WHERE id > 100")
	c.Exec(t, "VACUUM shrink_me") // truncates the file: stored whole
	c.Exec(t, "INSERT INTO grow_me SELECT g, 'grown' FROM generate_series(5001, 9000) g")
	c.Exec(t, "DROP TABLE created_1")
	c.Exec(t, "CREATE TABLE created_2 AS SELECT g AS id FROM generate_series(1, 2000) g")
	d2, want2 := push("delta", d1)

	bs := listChain(t, env)
	if b := bs[d2]; b.DeltaRoot == nil || *b.DeltaRoot != full || b.DeltaSize <= 0 {
		t.Errorf("backup-list: delta 2 is %+v, want root %s and a delta size", b, full)
	}
	if f, d := bs[full], bs[d1]; d.StoredSize*4 >= f.StoredSize {
		t.Errorf("delta 1 after updating 1%% of the pages stored %d bytes, the full backup %d: want well under a quarter", d.StoredSize, f.StoredSize)
	} else {
		t.Logf("full backup %d bytes stored, delta 1 %d, delta 2 %d", f.StoredSize, d.StoredSize, bs[d2].StoredSize)
	}
	if _, ok := want2["public.drop_me"]; ok {
		t.Fatal("test setup: drop_me still exists")
	}
	table := mustRun(t, env, "backup-list").stdout
	if !strings.Contains(table, "DELTA FROM") || !strings.Contains(table, d1) {
		t.Errorf("backup-list does not show the delta base:\n%s", table)
	}

	shared := pgtest.SharedDir(t)
	t.Run("restore", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			want map[string]string
		}{{d2, want2}, {d1, want1}} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				dest := filepath.Join(shared, tc.name)
				mustRun(t, env, "backup-fetch", dest, tc.name, "--target-immediate")
				rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
				rc.Start(t)
				rc.WaitPromoted(t, 120*time.Second)
				if got := rc.AllTableDigests(t, "postgres"); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("restored tables differ from the source at the backup:\n got %v\nwant %v\n%s", sortedKeys(got), sortedKeys(tc.want), diffDigests(got, tc.want))
				}
				rc.Stop(t)
				if out, err := pgtest.RunAsPostgres(t, filepath.Join(pgtest.BinDir(), "pg_checksums"), "--check", "-D", dest); err != nil {
					t.Errorf("pg_checksums --check: %v\n%s", err, out)
				}
			})
		}
	})

	// A missing link of the chain is named, and nothing is written.
	manifest := filepath.Join(repoDir, "backups", d1, "manifest.json")
	if err := os.Rename(manifest, manifest+".away"); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(shared, "broken")
	r := run(t, env, "backup-fetch", dest, d2, "--target-immediate")
	if r.code == 0 || !strings.Contains(r.stderr, d1) {
		t.Errorf("backup-fetch of delta 2 without delta 1's manifest: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("backup-fetch with a broken chain created %s", dest)
	}
	if err := os.Rename(manifest+".away", manifest); err != nil {
		t.Fatal(err)
	}
	parts, _ := filepath.Glob(filepath.Join(repoDir, "backups", d1, "parts", "part_*"))
	if len(parts) == 0 {
		t.Fatal("delta 1 has no parts")
	}
	if err := os.Remove(parts[0]); err != nil {
		t.Fatal(err)
	}
	r = run(t, env, "backup-fetch", dest, d2, "--target-immediate")
	if r.code == 0 || !strings.Contains(r.stderr, d1) || !strings.Contains(r.stderr, "missing") {
		t.Errorf("backup-fetch of delta 2 with a part of delta 1 gone: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("backup-fetch with a part of the chain missing created %s", dest)
	}
}
