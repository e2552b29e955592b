package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/internal/faultproxy"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
)

// summary counts what the reliability tests of this package did; TestMain
// prints it, and writes it to $WALRUS_SUMMARY_FILE for make test-long.
var summary struct {
	rounds, faults, kills, mismatches atomic.Int64
}

// countFaults adds the faults a proxy injected to the summary.
func countFaults(p *faultproxy.Proxy) { summary.faults.Add(p.Faults()) }

// longTests reports whether make test-long runs the tests
// (WALRUS_TEST_LONG=1).
func longTests() bool { return os.Getenv("WALRUS_TEST_LONG") != "" }

func TestMain(m *testing.M) {
	code := m.Run()
	line := fmt.Sprintf("e2e summary: %d fidelity rounds, %d faults injected, %d kills injected, %d mismatches",
		summary.rounds.Load(), summary.faults.Load(), summary.kills.Load(), summary.mismatches.Load())
	fmt.Println(line)
	if f := os.Getenv("WALRUS_SUMMARY_FILE"); f != "" {
		body := fmt.Sprintf("rounds=%d\nfaults=%d\nkills=%d\nmismatches=%d\n",
			summary.rounds.Load(), summary.faults.Load(), summary.kills.Load(), summary.mismatches.Load())
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "write %s: %v\n", f, err)
			code = 1
		}
	}
	os.Exit(code)
}

// clusterDigests returns AllTableDigests of every database that accepts
// connections (templates aside), keyed "db/schema.table".
func clusterDigests(t *testing.T, c *pgtest.Cluster) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, row := range c.Query(t, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1") {
		for k, v := range c.AllTableDigests(t, row[0]) {
			out[row[0]+"/"+k] = v
		}
	}
	return out
}

// execIn runs sql in database db of c on a session of its own.
func execIn(t *testing.T, c *pgtest.Cluster, db, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSNFor(db))
	if err != nil {
		t.Fatalf("connect to %s: %v", db, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %q: %v", db, sql, err)
	}
}

// fidelityRounds is how many rounds TestRestoreFidelity runs:
// $WALRUS_FIDELITY_ROUNDS, else 50 under make test-long, else 2.
func fidelityRounds(t *testing.T) int {
	if v := os.Getenv("WALRUS_FIDELITY_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("WALRUS_FIDELITY_ROUNDS=%q: want a positive number", v)
		}
		return n
	}
	if longTests() {
		return 50
	}
	return 2
}

// TestRestoreFidelity is the randomized restore-fidelity suite. Each round,
// from its own seed, picks a storage (fs or S3, on S3 sometimes behind a
// proxy injecting transient faults), a codec, encryption or not, a
// delta_max_steps, and runs a workload on a fresh archiving cluster:
// inserts, updates, deletes, TOAST values, DDL (CREATE/DROP TABLE,
// TRUNCATE, VACUUM, VACUUM FULL, CREATE INDEX, CREATE DATABASE, ALTER TABLE
// SET TABLESPACE), interleaved with full and delta backups (some taken
// while a session writes), restore points, and marks of a time and an LSN.
// At every point that can be a recovery target, nothing writes, and the
// test records the ordered digest of every table of every database. It
// then picks a target (latest, immediate, restore point, time, LSN; some
// with an older backup named), restores, starts the cluster, and compares
// every digest; pg_checksums checks the pages.
//
// WALRUS_FIDELITY_SEED fixes the seed of the first round (round i uses
// seed+i); WALRUS_FIDELITY_ROUNDS the number of rounds. A failing round
// prints its seed, the command that reruns it alone, and its steps.
func TestRestoreFidelity(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano() % 1_000_000_000)
	if v := os.Getenv("WALRUS_FIDELITY_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("WALRUS_FIDELITY_SEED=%q: want a number", v)
		}
		seed = s
	}
	rounds := fidelityRounds(t)
	t.Logf("restore fidelity: %d rounds from seed %d (WALRUS_FIDELITY_SEED=%d)", rounds, seed, seed)
	var (
		srvOnce sync.Once
		srv     *s3test.Server
	)
	s3 := func() *s3test.Server {
		srvOnce.Do(func() { srv = s3test.Start(t) })
		return srv
	}
	t.Run("rounds", func(t *testing.T) {
		for i := range rounds {
			rs := seed + uint64(i)
			t.Run(fmt.Sprintf("seed%d", rs), func(t *testing.T) {
				t.Parallel()
				r := &round{t: t, seed: rs, rng: rand.New(rand.NewPCG(rs, rs^0x9e3779b97f4a7c15))}
				defer func() {
					summary.rounds.Add(1)
					if t.Failed() {
						t.Logf("round with seed %d failed; rerun it alone with\n  WALRUS_FIDELITY_SEED=%d WALRUS_FIDELITY_ROUNDS=1 go test ./internal/e2e -run 'TestRestoreFidelity' -v\nsteps:\n  %s",
							rs, rs, strings.Join(r.steps, "\n  "))
					}
				}()
				r.run(s3)
			})
		}
	})
}

// round is one round of TestRestoreFidelity.
type round struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	steps []string

	c       *pgtest.Cluster
	env     []string
	tsDir   string
	tsOID   string
	dbs     []string            // databases of the workload, "postgres" first
	tables  map[string][]string // database → its workload tables
	nextID  int
	backups []fidelityBackup
	points  []fidelityPoint
	proxy   *faultproxy.Proxy
}

// fidelityBackup is a backup the round took.
type fidelityBackup struct {
	name string
	// quiet is true when nothing wrote during the backup, so that the
	// data at its consistency point is known.
	quiet bool
}

// fidelityPoint is a recovery target and the data the source held there.
type fidelityPoint struct {
	kind string // "latest", "immediate", "restore-point", "time", "lsn"
	arg  string // backup name, restore point name, time or LSN
	// after is the number of backups completed before the point.
	after int
	want  map[string]string
}

func (r *round) logf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.steps = append(r.steps, s)
	r.t.Log(s)
}

func (r *round) pick(n int) int { return r.rng.IntN(n) }

func (r *round) chance(p float64) bool { return r.rng.Float64() < p }

func (r *round) run(s3 func() *s3test.Server) {
	t := r.t
	// Storage, codec, encryption, chain length.
	var env []string
	if r.chance(0.5) {
		env, _ = storages[0].setup(t)
		r.logf("storage fs")
	} else {
		srv := s3()
		env = srv.Env(srv.NewBucket(t))
		if r.chance(0.5) {
			r.proxy = faultproxy.Start(t, srv.Endpoint, faultproxy.Options{Seed: r.seed, Rate: 0.05, MaxInARow: 2})
			t.Cleanup(func() { countFaults(r.proxy) })
			env = append(env, "WALRUS_S3_ENDPOINT="+r.proxy.URL())
			r.logf("storage s3 behind a proxy injecting 5%% transient faults")
		} else {
			r.logf("storage s3")
		}
	}
	names := compress.Names()
	codec := names[r.pick(len(names))]
	env = append(env, "WALRUS_COMPRESSION="+codec)
	if codec == "lzma" {
		// Its default preset is slow for a test's WAL; the format is
		// the same at every level.
		env = append(env, "WALRUS_COMPRESSION_LEVEL=1")
	}
	if r.chance(0.5) {
		keys := pgtest.SharedDir(t)
		identity := filepath.Join(keys, "age.key")
		recipient := strings.TrimSpace(mustRun(t, nil, "keygen", "--output", identity).stdout)
		pgtest.ChownPostgres(t, keys)
		env = append(env, "WALRUS_AGE_RECIPIENTS="+recipient, "WALRUS_AGE_IDENTITY_FILE="+identity)
		r.logf("codec %s, encrypted", codec)
	} else {
		r.logf("codec %s, plaintext", codec)
	}
	steps := 1 + r.pick(4)
	env = append(env, "WALRUS_DELTA_MAX_STEPS="+strconv.Itoa(steps), "WALRUS_PART_SIZE=1MiB", "WALRUS_UPLOAD_CONCURRENCY=2", "WALRUS_DOWNLOAD_CONCURRENCY=2")
	r.logf("delta_max_steps %d, part_size 1MiB", steps)

	r.c, _ = archivingCluster(t, env)
	r.env = append(env, "WALRUS_POSTGRES_DSN="+r.c.DSN())
	r.tsDir = filepath.Join(pgtest.SharedDir(t), "ts1")
	if err := os.Mkdir(r.tsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.ChownPostgres(t, r.tsDir)
	r.c.Exec(t, fmt.Sprintf("CREATE TABLESPACE ts1 LOCATION '%s'", r.tsDir))
	r.tsOID = r.c.QueryRow(t, "SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
	r.c.Exec(t, "CREATE TABLE busy (id bigserial, v text)")
	r.dbs = []string{"postgres"}
	r.tables = map[string][]string{}
	r.logf("CREATE TABLESPACE ts1; CREATE TABLE busy")

	// The workload: some data, the first backup, then a random mix of
	// changes, backups and target points.
	for range 1 + r.pick(3) {
		r.change()
	}
	r.backup(true)
	events := 4 + r.pick(7)
	for i := range events {
		for range 1 + r.pick(3) {
			r.change()
		}
		switch x := r.pick(10); {
		case x < 3:
			r.backup(r.chance(0.2))
		case x < 5:
			r.restorePoint(i)
		case x < 7:
			r.markTime()
		case x < 9:
			r.markLSN()
		}
	}
	// Something committed after every point, so that time and LSN
	// targets lie inside the archived WAL; then archive it all.
	r.change()
	r.exec("postgres", "INSERT INTO busy (v) VALUES ('end of the workload')")
	r.points = append(r.points, fidelityPoint{kind: "latest", after: len(r.backups), want: clusterDigests(t, r.c)})
	last := r.c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	r.c.Exec(t, "SELECT pg_switch_wal()")
	r.c.WaitArchived(t, last, 3*time.Minute)
	r.logf("switched WAL; %s archived", last)

	// A kind of target first, so that each kind is as likely whatever
	// the number of points of each, then a point of that kind.
	byKind := map[string][]fidelityPoint{}
	var kinds []string
	for _, p := range r.points {
		if byKind[p.kind] == nil {
			kinds = append(kinds, p.kind)
		}
		byKind[p.kind] = append(byKind[p.kind], p)
	}
	ps := byKind[kinds[r.pick(len(kinds))]]
	r.restore(ps[r.pick(len(ps))])
}

// exec runs sql in db and logs it.
func (r *round) exec(db, sql string) {
	r.logf("%s: %s", db, sql)
	execIn(r.t, r.c, db, sql)
}

// table returns a random workload table of db, creating one if it has
// none.
func (r *round) table(db string) string {
	if len(r.tables[db]) == 0 {
		return r.createTable(db)
	}
	return r.tables[db][r.pick(len(r.tables[db]))]
}

func (r *round) createTable(db string) string {
	r.nextID++
	name := fmt.Sprintf("t%d", r.nextID)
	ts := ""
	if r.chance(0.3) {
		ts = " TABLESPACE ts1"
	}
	r.exec(db, fmt.Sprintf("CREATE TABLE %s (id int, v text, n bigint)%s", name, ts))
	r.exec(db, fmt.Sprintf("INSERT INTO %s SELECT g, md5((g * %d)::text), g FROM generate_series(1, %d) g", name, r.nextID, 300+r.pick(5000)))
	r.tables[db] = append(r.tables[db], name)
	return name
}

// change applies one random change to one database.
func (r *round) change() {
	db := r.dbs[r.pick(len(r.dbs))]
	switch r.pick(14) {
	case 0, 1:
		r.exec(db, fmt.Sprintf("INSERT INTO %s SELECT g, md5(g::text || 'i%d'), g FROM generate_series(1, %d) g", r.table(db), r.pick(1000), 100+r.pick(3000)))
	case 2, 3:
		k := 2 + r.pick(20)
		r.exec(db, fmt.Sprintf("UPDATE %s SET v = md5(v), n = n + 1 WHERE id %% %d = %d", r.table(db), k, r.pick(k)))
	case 4:
		k := 2 + r.pick(10)
		r.exec(db, fmt.Sprintf("DELETE FROM %s WHERE id %% %d = %d", r.table(db), k, r.pick(k)))
	case 5:
		r.exec(db, fmt.Sprintf("INSERT INTO %s SELECT g, (SELECT string_agg(md5((x + g)::text), '') FROM generate_series(1, 100) x), g FROM generate_series(1, %d) g", r.table(db), 10+r.pick(100)))
	case 6:
		r.createTable(db)
	case 7:
		if len(r.tables[db]) > 1 {
			i := r.pick(len(r.tables[db]))
			r.exec(db, "DROP TABLE "+r.tables[db][i])
			r.tables[db] = append(r.tables[db][:i], r.tables[db][i+1:]...)
		} else {
			r.createTable(db)
		}
	case 8:
		tb := r.table(db)
		r.exec(db, "TRUNCATE "+tb)
		r.exec(db, fmt.Sprintf("INSERT INTO %s SELECT g, 'after truncate', g FROM generate_series(1, %d) g", tb, r.pick(300)))
	case 9:
		r.exec(db, "VACUUM FULL "+r.table(db))
	case 10:
		tb := r.table(db)
		r.exec(db, fmt.Sprintf("DELETE FROM %s WHERE id > %d", tb, r.pick(400)))
		r.exec(db, "VACUUM "+tb)
	case 11:
		ts := "ts1"
		if r.chance(0.4) {
			ts = "pg_default"
		}
		r.exec(db, fmt.Sprintf("ALTER TABLE %s SET TABLESPACE %s", r.table(db), ts))
	case 12:
		r.exec(db, fmt.Sprintf("CREATE INDEX ON %s (n)", r.table(db)))
	case 13:
		if len(r.dbs) < 2 {
			r.nextID++
			name := fmt.Sprintf("db%d", r.nextID)
			r.exec("postgres", "CREATE DATABASE "+name)
			r.dbs = append(r.dbs, name)
			r.createTable(name)
		} else {
			r.createTable(db)
		}
	}
}

// backup runs backup-push: a delta unless the chain is long enough or
// full is asked, sometimes while a session writes.
func (r *round) backup(full bool) {
	t := r.t
	args := []string{"backup-push", r.c.DataDir()}
	if full {
		args = append(args, "--full")
	}
	busy := len(r.backups) > 0 && r.chance(0.3)
	var (
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	if busy {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, r.c.DSN())
			if err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			defer conn.Close(ctx)
			// A steady trickle: enough to change pages while they are
			// read, not so much that archiving falls behind.
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := conn.Exec(ctx, "INSERT INTO busy (v) SELECT md5(g::text) FROM generate_series(1, 100) g"); err != nil {
					t.Errorf("writer: %v", err)
					return
				}
			}
		}()
	}
	res := mustRun(t, r.env, args...)
	close(stop)
	wg.Wait()
	name := strings.TrimSpace(res.stdout)
	kind := "full"
	if strings.Contains(res.stderr, "a delta of ") {
		kind = "delta"
	}
	r.backups = append(r.backups, fidelityBackup{name: name, quiet: !busy})
	r.logf("walrus %s → %s (%s%s)", strings.Join(args, " "), name, kind, map[bool]string{true: ", while a session wrote", false: ""}[busy])
	if !busy {
		r.points = append(r.points, fidelityPoint{kind: "immediate", arg: name, after: len(r.backups), want: clusterDigests(t, r.c)})
	}
}

func (r *round) restorePoint(i int) {
	name := fmt.Sprintf("rp%d", i)
	lsn := strings.TrimSpace(mustRun(r.t, r.env, "create-restore-point", name).stdout)
	r.logf("walrus create-restore-point %s → %s", name, lsn)
	r.points = append(r.points, fidelityPoint{kind: "restore-point", arg: name, after: len(r.backups), want: clusterDigests(r.t, r.c)})
}

func (r *round) markTime() {
	time.Sleep(20 * time.Millisecond)
	ts := r.c.QueryRow(r.t, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)
	time.Sleep(20 * time.Millisecond)
	r.logf("time mark %s", ts)
	r.points = append(r.points, fidelityPoint{kind: "time", arg: ts, after: len(r.backups), want: clusterDigests(r.t, r.c)})
}

func (r *round) markLSN() {
	lsn := r.c.QueryRow(r.t, "SELECT pg_current_wal_insert_lsn()")
	r.logf("LSN mark %s", lsn)
	r.points = append(r.points, fidelityPoint{kind: "lsn", arg: lsn, after: len(r.backups), want: clusterDigests(r.t, r.c)})
}

// restore restores to p, starts the cluster and compares.
func (r *round) restore(p fidelityPoint) {
	t := r.t
	shared := pgtest.SharedDir(t)
	dest := filepath.Join(shared, "restored")
	args := []string{"backup-fetch", dest}
	switch p.kind {
	case "latest":
		args = append(args, "LATEST")
	case "immediate":
		args = append(args, p.arg, "--target-immediate")
	default:
		// Sometimes an older backup than walrus would choose.
		if p.after > 1 && r.chance(0.3) {
			args = append(args, r.backups[r.pick(p.after)].name)
		}
		flag := map[string]string{"restore-point": "--restore-point", "time": "--target-time", "lsn": "--target-lsn"}[p.kind]
		args = append(args, flag, p.arg)
	}
	args = append(args, "--tablespace-map", r.tsOID+"="+filepath.Join(shared, "ts_restored"))
	res := mustRun(t, r.env, args...)
	r.logf("target %s %s: walrus %s → %s", p.kind, p.arg, strings.Join(args, " "), strings.TrimSpace(res.stdout))
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 5*time.Minute)
	got := clusterDigests(t, rc)
	rc.Stop(t)
	if !reflect.DeepEqual(got, p.want) {
		summary.mismatches.Add(1)
		t.Errorf("restored data differs from the source at the %s target %s:\n%s", p.kind, p.arg, diffAll(got, p.want))
	}
	if out, err := pgtest.RunAsPostgres(t, filepath.Join(pgtest.BinDir(), "pg_checksums"), "--check", "-D", dest); err != nil {
		t.Errorf("pg_checksums --check of the restored cluster: %v\n%s", err, out)
	}
}

// diffAll lists the tables whose digests differ, in either direction.
func diffAll(got, want map[string]string) string {
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var b strings.Builder
	for _, k := range ks {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "  %s: missing after the restore (want %s)\n", k, w)
		case !wok:
			fmt.Fprintf(&b, "  %s: restored (%s) but absent at the target\n", k, g)
		case g != w:
			fmt.Fprintf(&b, "  %s: got %s, want %s\n", k, g, w)
		}
	}
	return b.String()
}
