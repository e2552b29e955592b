package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/pg"
)

// TestDeltaBaseOnAbandonedTimeline is TRAPS.md 21 end to end, on the
// filesystem repository. Cluster A (timeline 1) archives; full backup F;
// batch A; restore point "fork" (P); batch B, WAL switched; delta D1 of F.
// F is restored to P into a second directory, which promotes onto timeline
// 2 and archives into the same repository; there batch X is written where
// batch B was on timeline 1, then WAL until the position is past D1's
// finish, so that only the timeline, not the LSN order, tells D1 apart.
// backup-push on timeline 2 must then take a full backup and say that D1 is
// not on timeline 2's history: chooseBase only considers the newest backup
// of the system (D1), and D1 finished after the branch point. (A delta of
// D1 would skip the pages batch X wrote, whose timeline-2 LSNs are below
// D1's start, and restore batch B in their place.) The new backup, restored
// with --target-immediate into a third directory, must hold exactly the
// timeline-2 cluster's tables (row counts and md5 of every table), and no
// recovery setting copied from the backed-up postgresql.auto.conf (the
// timeline-2 cluster's own restore target) may stay active beside the ones
// backup-fetch writes.
//
// Then data_checksums: on the timeline-2 cluster, pg_checksums --disable
// makes the next backup full, pg_checksums --enable makes the one after
// full again (off to on), and a further backup with nothing changed is a
// delta, so the fulls are due to the checksum changes.
func TestDeltaBaseOnAbandonedTimeline(t *testing.T) {
	t.Parallel()
	repoEnv, repoDir := storages[0].setup(t)
	a, wrapper := archivingCluster(t, repoEnv)
	envA := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+a.DSN())
	shared := pgtest.SharedDir(t)

	// No autovacuum on the test's tables: a vacuum on timeline 2 would
	// give batch X's pages new LSNs and hide a wrong delta base.
	a.Exec(t, "CREATE TABLE journal (batch text, n int, pad text) WITH (autovacuum_enabled = off)")
	a.Exec(t, "CREATE TABLE filler (n int, pad text) WITH (autovacuum_enabled = off)")
	insert := func(c *pgtest.Cluster, batch string) {
		t.Helper()
		c.Exec(t, fmt.Sprintf("INSERT INTO journal SELECT '%s', g, repeat('%s', 60) FROM generate_series(1, 1000) g", batch, batch))
	}
	batches := func(c *pgtest.Cluster) string {
		t.Helper()
		var out []string
		for _, row := range c.Query(t, "SELECT batch || ':' || count(*) FROM journal GROUP BY batch ORDER BY batch") {
			out = append(out, row[0])
		}
		return strings.Join(out, ",")
	}
	// push runs backup-push and returns the new backup as backup-list
	// --json shows it, and what backup-push said on stderr.
	push := func(env []string, dataDir string) (catalog.Backup, string) {
		t.Helper()
		r := mustRun(t, env, "backup-push", dataDir)
		name := strings.TrimSpace(r.stdout)
		b, ok := backupsByName(t, env)[name]
		if !ok {
			t.Fatalf("backup-push printed %q, which backup-list --json does not show\n%s", r.stdout, r.stderr)
		}
		return b, r.stderr
	}

	// Timeline 1: F, batch A, restore point P, batch B, D1.
	f, _ := push(envA, a.DataDir())
	if f.Kind != catalog.KindFull {
		t.Fatalf("first backup is %s, want full", f.Kind)
	}
	insert(a, "A")
	fork := strings.TrimSpace(mustRun(t, envA, "create-restore-point", "fork").stdout)
	if !strings.Contains(fork, "/") {
		t.Fatalf("create-restore-point printed %q", fork)
	}
	insert(a, "B")
	last := a.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	a.Exec(t, "SELECT pg_switch_wal()")
	a.WaitArchived(t, last, 120*time.Second)
	d1, d1Log := push(envA, a.DataDir())
	if d1.Kind != catalog.KindDelta || d1.DeltaFrom == nil || *d1.DeltaFrom != f.Name || d1.Timeline != 1 {
		t.Fatalf("second backup on timeline 1 is %s from %v on timeline %d, want a delta of %s (deltas must normally happen)\n%s",
			d1.Kind, d1.DeltaFrom, d1.Timeline, f.Name, d1Log)
	}
	if got := batches(a); got != "A:1000,B:1000" {
		t.Fatalf("test setup: cluster A holds %s", got)
	}
	a.Stop(t) // timeline 1 is abandoned from here on

	// Restore F to P: the server promotes onto timeline 2 and archives
	// into the same repository.
	dest2 := filepath.Join(shared, "timeline2")
	r := mustRun(t, repoEnv, "backup-fetch", dest2, "--restore-point", "fork")
	if !strings.Contains(r.stdout+r.stderr, f.Name) {
		t.Errorf("backup-fetch --restore-point fork did not say it chose %s:\n%s%s", f.Name, r.stdout, r.stderr)
	}
	c2 := pgtest.Attach(t, dest2, pgtest.Options{Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", wrapper),
		"wal_keep_size = '1GB'",
	}})
	c2.Start(t)
	c2.WaitPromoted(t, 300*time.Second)
	env2 := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c2.DSN())
	if tli := c2.QueryRow(t, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"); tli != "00000002" {
		t.Fatalf("test setup: the restored cluster writes timeline %s, want 00000002", tli)
	}
	insert(c2, "X") // on the pages batch B filled on timeline 1, at lower LSNs than D1's start
	// Move timeline 2 past D1's finish, so that the LSN order alone
	// would allow D1 as a base.
	for i := 0; ; i++ {
		past := c2.QueryRow(t, "SELECT pg_current_wal_lsn() > $1::pg_lsn", d1.FinishLSN.String())
		if past == "t" {
			break
		}
		if i == 20 {
			t.Fatalf("test setup: timeline 2 does not get past D1's finish %s", d1.FinishLSN)
		}
		c2.Exec(t, "INSERT INTO filler SELECT g, repeat('f', 100) FROM generate_series(1, 2000) g")
		c2.Exec(t, "SELECT pg_switch_wal()")
	}
	last = c2.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c2.Exec(t, "SELECT pg_switch_wal()")
	c2.WaitArchived(t, last, 120*time.Second)
	if h, _ := filepath.Glob(filepath.Join(repoDir, "wal", "00000002.history*")); len(h) != 1 {
		t.Fatalf("test setup: 00000002.history in the repository: %v", h)
	}

	// The backup on timeline 2: D1 is the newest backup of the system,
	// but it finished on timeline 1 after the branch point.
	n, nLog := push(env2, c2.DataDir())
	want := c2.AllTableDigests(t, "postgres") // nothing wrote since pg_backup_stop
	if n.Timeline != 2 || n.StartLSN <= d1.FinishLSN {
		t.Fatalf("test setup: the timeline-2 backup starts at %s on timeline %d, want timeline 2 past D1's finish %s", n.StartLSN, n.Timeline, d1.FinishLSN)
	}
	if n.Kind != catalog.KindFull || n.DeltaFrom != nil || n.DeltaRoot != nil {
		t.Errorf("backup on timeline 2 is a %s from %v (root %v), want a full backup: D1 %s (timeline 1, finished at %s) is past the branch point %s\n%s",
			n.Kind, orNone(n.DeltaFrom), orNone(n.DeltaRoot), d1.Name, d1.FinishLSN, fork, nLog)
	} else if !strings.Contains(nLog, "a full backup: backup "+d1.Name) || !strings.Contains(nLog, "not on the history of timeline 2") {
		t.Errorf("backup-push on timeline 2 does not say it is full because %s is not on timeline 2's history:\n%s", d1.Name, nLog)
	}
	if got := batches(c2); got != "A:1000,X:1000" {
		t.Fatalf("test setup: the timeline-2 cluster holds %s, want A:1000,X:1000", got)
	}

	// The backup restores to exactly the timeline-2 cluster's content.
	dest3 := filepath.Join(shared, "restored")
	fetched := mustRun(t, repoEnv, "backup-fetch", dest3, n.Name, "--target-immediate")
	// The timeline-2 cluster's postgresql.auto.conf still holds the
	// recovery settings of its own restore (recovery_target_lsn of P), and
	// the backup copies it. Settings that backup-fetch did not just write
	// must not steer this recovery: with recovery_target = 'immediate' as
	// well, PostgreSQL refuses to start ("multiple recovery targets
	// specified"); with no target, the inherited recovery_target_timeline
	// = '1' makes it read timeline 1's segment at the backup's start and
	// stop with "could not locate required checkpoint record".
	if stale := inheritedRecoveryTargets(t, dest3); len(stale) > 0 {
		t.Fatalf("backup-fetch of %s leaves recovery settings inherited from the backed-up postgresql.auto.conf active beside its own recovery_target = 'immediate':\n%s",
			n.Name, strings.Join(stale, "\n"))
	}
	if !strings.Contains(fetched.stderr, "commented out the recovery settings") || !strings.Contains(fetched.stderr, "recovery_target_lsn") {
		t.Errorf("backup-fetch does not say it commented out the inherited recovery_target_lsn:\n%s", fetched.stderr)
	}
	c3 := pgtest.Attach(t, dest3, pgtest.Options{Conf: []string{"archive_mode = off"}})
	c3.Start(t)
	c3.WaitPromoted(t, 300*time.Second)
	if got := batches(c3); got != "A:1000,X:1000" {
		t.Errorf("restored backup %s holds batches %s, want A:1000,X:1000 as on timeline 2", n.Name, got)
	}
	if got := c3.AllTableDigests(t, "postgres"); !reflect.DeepEqual(got, want) {
		t.Errorf("restored tables differ from the timeline-2 cluster at the backup:\n got %v\nwant %v\n%s", sortedKeys(got), sortedKeys(want), diffDigests(got, want))
	}
	c3.Stop(t)

	// data_checksums on -> off -> on: each change forces a full backup.
	t.Run("data_checksums", func(t *testing.T) {
		checksums := func(mode string) {
			t.Helper()
			c2.Stop(t)
			if out, err := pgtest.RunAsPostgres(t, filepath.Join(pgtest.BinDir(), "pg_checksums"), mode, "-D", c2.DataDir()); err != nil {
				t.Fatalf("pg_checksums %s: %v\n%s", mode, err, out)
			}
			c2.Start(t)
			c2.WaitPromoted(t, 120*time.Second)
		}
		c2.Exec(t, "INSERT INTO filler SELECT g, 'off' FROM generate_series(1, 100) g")
		checksums("--disable")
		off, offLog := push(env2, c2.DataDir())
		if off.DataChecksums || off.Kind != catalog.KindFull || off.DeltaFrom != nil {
			t.Errorf("backup after pg_checksums --disable: %s from %v, data_checksums %v; want a full backup without checksums\n%s",
				off.Kind, orNone(off.DeltaFrom), off.DataChecksums, offLog)
		} else if !strings.Contains(offLog, "data_checksums was true when backup "+n.Name) {
			t.Errorf("backup-push does not say the data_checksums change forced a full backup:\n%s", offLog)
		}

		c2.Exec(t, "INSERT INTO filler SELECT g, 'on' FROM generate_series(1, 100) g")
		checksums("--enable")
		on, onLog := push(env2, c2.DataDir())
		if !on.DataChecksums || on.Kind != catalog.KindFull || on.DeltaFrom != nil {
			t.Errorf("backup after pg_checksums --enable: %s from %v, data_checksums %v; want a full backup with checksums\n%s",
				on.Kind, orNone(on.DeltaFrom), on.DataChecksums, onLog)
		} else if !strings.Contains(onLog, "data_checksums was false when backup "+off.Name) {
			t.Errorf("backup-push does not say the data_checksums change forced a full backup:\n%s", onLog)
		}

		// Nothing changed since: a delta again, on timeline 2.
		c2.Exec(t, "INSERT INTO filler SELECT g, 'again' FROM generate_series(1, 100) g")
		d, dLog := push(env2, c2.DataDir())
		if d.Kind != catalog.KindDelta || d.DeltaFrom == nil || *d.DeltaFrom != on.Name {
			t.Errorf("backup with data_checksums unchanged: %s from %v, want a delta of %s\n%s", d.Kind, orNone(d.DeltaFrom), on.Name, dLog)
		}
	})
}

// backupsByName returns backup-list --json by backup name.
func backupsByName(t *testing.T, env []string) map[string]catalog.Backup {
	t.Helper()
	out := mustRun(t, env, "backup-list", "--json").stdout
	var doc struct {
		Backups []catalog.Backup `json:"backups"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("backup-list --json: %v\n%s", err, out)
	}
	m := make(map[string]catalog.Backup, len(doc.Backups))
	for _, b := range doc.Backups {
		m[b.Name] = b
	}
	return m
}

// orNone prints an optional backup name.
func orNone(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

// walrusRecoveryMarker starts the block of recovery settings backup-fetch
// appends to postgresql.auto.conf.
const walrusRecoveryMarker = "# Added by walrus backup-fetch"

// inheritedRecoveryTargets returns the active recovery_target* lines of
// the restored dest/postgresql.auto.conf that come before the block
// backup-fetch just appended (copied from the backed-up cluster) and that
// this block does not set again.
func inheritedRecoveryTargets(t *testing.T, dest string) []string {
	t.Helper()
	p := filepath.Join(dest, "postgresql.auto.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	i := strings.LastIndex(body, walrusRecoveryMarker)
	if i < 0 {
		t.Fatalf("backup-fetch wrote no %q block to %s:\n%s", walrusRecoveryMarker, p, body)
	}
	targets := func(text string) (names, lines []string) {
		for _, l := range strings.Split(text, "\n") {
			if name, _, ok := pg.ParseConfLine(l); ok && strings.HasPrefix(name, "recovery_target") {
				names, lines = append(names, name), append(lines, l)
			}
		}
		return names, lines
	}
	own, _ := targets(body[i:]) // set again by backup-fetch, so overridden
	var stale []string
	names, lines := targets(body[:i])
	for k, name := range names {
		if !slices.Contains(own, name) {
			stale = append(stale, lines[k])
		}
	}
	return stale
}
