package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/faultproxy"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
)

// trap is a proxy in front of the S3 server that holds back the request
// a test armed it for, and tells the test, so that the test can kill the
// walrus process while that request is in flight. A held request is then
// answered with an error, never forwarded: the kill lands exactly before
// it takes effect; arming the request that follows one lands it exactly
// after that one took effect.
type trap struct {
	proxy  *faultproxy.Proxy
	mu     sync.Mutex
	match  func(*http.Request) bool
	hit    chan held
	closed chan struct{}
}

// held is a request the trap holds: release lets it go (as an error).
type held struct {
	what    string
	release chan struct{}
}

func newTrap(t *testing.T, srv *s3test.Server) *trap {
	tr := &trap{hit: make(chan held, 1), closed: make(chan struct{})}
	tr.proxy = faultproxy.Start(t, srv.Endpoint, faultproxy.Options{
		Rate: 1, Kinds: []faultproxy.Kind{faultproxy.ErrorResponse}, Match: tr.matches,
	})
	t.Cleanup(func() { close(tr.closed) })
	return tr
}

// matches sees every request; it holds the first one the armed matcher
// accepts until the test releases it (or its client goes away), and then
// makes the proxy answer it with an error.
func (tr *trap) matches(r *http.Request) bool {
	tr.mu.Lock()
	if tr.match == nil || !tr.match(r) {
		tr.mu.Unlock()
		return false
	}
	tr.match = nil
	tr.mu.Unlock()
	h := held{what: r.Method + " " + r.URL.Path, release: make(chan struct{})}
	tr.hit <- h
	select {
	case <-h.release:
	case <-tr.closed:
	case <-r.Context().Done():
	}
	return true
}

func (tr *trap) arm(match func(*http.Request) bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.match = match
}

// request matches method on a path that contains sub.
func request(method, sub string) func(*http.Request) bool {
	return func(r *http.Request) bool { return r.Method == method && strings.Contains(r.URL.Path, sub) }
}

// after matches second once a request that first accepts has been seen.
func after(first, second func(*http.Request) bool) func(*http.Request) bool {
	seen := false
	return func(r *http.Request) bool {
		if seen && second(r) {
			return true
		}
		if first(r) {
			seen = true
		}
		return false
	}
}

// nth matches the n-th request that m accepts.
func nth(n int, m func(*http.Request) bool) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if m(r) {
			n--
		}
		return m(r) && n == 0
	}
}

// killAt runs walrus with args and kills it (SIGKILL) as soon as the trap
// holds the request match accepts. It fails the test if walrus ends first.
func killAt(t *testing.T, tr *trap, env []string, match func(*http.Request) bool, args ...string) {
	t.Helper()
	tr.arm(match)
	defer tr.arm(nil)
	cmd, stderr := startWalrus(t, env, args...)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case h := <-tr.hit:
		cmd.Process.Kill()
		<-exited
		close(h.release)
		summary.kills.Add(1)
		t.Logf("killed walrus %s at %s", args[0], h.what)
	case err := <-exited:
		t.Fatalf("walrus %v ended (%v) before the request it was to be killed at:\n%s", args, err, stderr)
	case <-time.After(3 * time.Minute):
		t.Fatalf("walrus %v never sent the request it was to be killed at:\n%s", args, stderr)
	}
}

// killAfter runs walrus with args and kills it after d, unless it ends
// first; it reports whether it was killed.
func killAfter(t *testing.T, env []string, d time.Duration, args ...string) bool {
	t.Helper()
	cmd, _ := startWalrus(t, env, args...)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
		return false
	case <-time.After(d):
		cmd.Process.Kill()
		<-exited
		summary.kills.Add(1)
		return true
	}
}

// crashRounds is how many random-time kills each crash test makes.
func crashRounds() int {
	if longTests() {
		return 12
	}
	return 2
}

// TestCrashes kills walrus with SIGKILL at chosen requests (held back by
// a proxy, so the kill lands exactly before or after a request takes
// effect) and at random times: wal-push, backup-push, create-restore-point
// and backup-fetch. Afterwards nothing incomplete looks complete (every
// listed backup restores, a killed restore leaves nothing PostgreSQL would
// start, a killed push leaves the segment absent or whole), and running
// the command again completes. The restore at the end recovers, through
// the restore point whose first creation was killed, exactly the data the
// source held when the restore point was finally recorded.
func TestCrashes(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	tr := newTrap(t, srv)
	keys := pgtest.SharedDir(t)
	identity := filepath.Join(keys, "age.key")
	recipient := strings.TrimSpace(mustRun(t, nil, "keygen", "--output", identity).stdout)
	pgtest.ChownPostgres(t, keys)
	repoEnv := append(srv.Env(srv.NewBucket(t)), "WALRUS_AGE_RECIPIENTS="+recipient, "WALRUS_AGE_IDENTITY_FILE="+identity, "WALRUS_COMPRESSION=zstd")
	c, _ := archivingCluster(t, repoEnv)
	// The commands under test go through the trap; archive_command does
	// not.
	env := append(append([]string{}, repoEnv...), "WALRUS_S3_ENDPOINT="+tr.proxy.URL(), "WALRUS_POSTGRES_DSN="+c.DSN(),
		"WALRUS_PART_SIZE=1MiB", "WALRUS_UPLOAD_CONCURRENCY=2", "WALRUS_DOWNLOAD_CONCURRENCY=2")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	c.Exec(t, "CREATE TABLE t (id int, v text)")
	c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100000) g")

	// backup-push: killed before its first part is stored, before its
	// manifest is stored, and at random times while it uploads slowly.
	noSession := func() {
		waitFor(t, "the killed backup's session to end", func() bool {
			return c.QueryRow(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'walrus'") == "0"
		})
	}
	killAt(t, tr, env, request("PUT", "/parts/part_00001"), "backup-push", c.DataDir())
	noSession()
	killAt(t, tr, env, request("PUT", "/manifest.json"), "backup-push", c.DataDir())
	noSession()
	slow := append(append([]string{}, env...), "WALRUS_BACKUP_RATE_LIMIT=8MiB")
	for range crashRounds() {
		killAfter(t, slow, time.Duration(200+rng.IntN(4000))*time.Millisecond, "backup-push", c.DataDir())
		noSession()
	}
	backup := strings.TrimSpace(mustRun(t, env, "backup-push", c.DataDir()).stdout)
	// Every backup listed (what the kills left, and the one just taken)
	// verifies and restores (the files: sizes and checksums).
	bs := listBackups(t, env)
	if bs[len(bs)-1].Name != backup {
		t.Fatalf("backup-list after the kills: %+v, newest should be %s", bs, backup)
	}
	mustRun(t, env, "backup-verify", "--all")
	for _, b := range bs {
		mustRun(t, env, "backup-fetch", filepath.Join(pgtest.SharedDir(t), "check-"+b.Name), b.Name, "--target-immediate")
	}

	// create-restore-point: killed before its record is stored, after
	// PostgreSQL made the restore point. Rows written before it is run
	// again must be restored.
	c.Exec(t, "INSERT INTO t SELECT g, 'batch A' FROM generate_series(1, 1000) g")
	killAt(t, tr, env, request("PUT", "/restore-points/crash-rp.json"), "create-restore-point", "crash-rp")
	if list := mustRun(t, env, "restore-point-list").stdout; strings.Contains(list, "crash-rp") {
		t.Fatalf("restore-point-list shows the restore point whose creation was killed:\n%s", list)
	}
	c.Exec(t, "INSERT INTO t SELECT g, 'batch X' FROM generate_series(1, 1000) g")
	mustRun(t, env, "create-restore-point", "crash-rp")
	want := c.AllTableDigests(t, "postgres")
	for i := range crashRounds() {
		name := fmt.Sprintf("random-rp-%d", i)
		if killAfter(t, env, time.Duration(rng.IntN(1500))*time.Millisecond, "create-restore-point", name) {
			if r := run(t, env, "create-restore-point", name); r.code != 0 && !strings.Contains(r.stderr, "already exists") {
				t.Errorf("create-restore-point %s after a kill: exit %d\n%s", name, r.code, r.stderr)
			}
		}
	}
	c.Exec(t, "INSERT INTO t SELECT g, 'batch C' FROM generate_series(1, 1000) g")
	last := c.QueryRow(t, "SELECT pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "SELECT pg_switch_wal()")
	c.WaitArchived(t, last, 2*time.Minute)

	// backup-fetch: killed while it downloads a part, and at random
	// times. What it leaves never starts; run again, into the same
	// directory, it refuses; into a clean one it restores.
	shared := pgtest.SharedDir(t)
	dest := filepath.Join(shared, "restored")
	fetch := []string{"backup-fetch", dest, "--restore-point", "crash-rp"}
	exists := func(f string) bool { _, err := os.Lstat(filepath.Join(dest, f)); return err == nil }
	notStartable := func() {
		for _, f := range []string{"global/pg_control", "PG_VERSION", "recovery.signal", "backup_label"} {
			if exists(f) {
				t.Errorf("a backup-fetch killed while downloading left %s in %s", f, dest)
			}
		}
	}
	killAt(t, tr, env, nth(2, request("GET", "/parts/part_")), fetch...)
	notStartable()
	if r := run(t, env, fetch...); r.code == 0 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("backup-fetch into what a killed one left: exit %d, want a refusal naming the non-empty directory\n%s", r.code, r.stderr)
	}
	for range crashRounds() {
		os.RemoveAll(dest)
		// Killed at any instant, even while it finishes: pg_control,
		// without which PostgreSQL does not start, comes after
		// everything else.
		if killAfter(t, env, time.Duration(rng.IntN(1500))*time.Millisecond, fetch...) && exists("global/pg_control") {
			for _, f := range []string{"PG_VERSION", "recovery.signal", "backup_label", "postgresql.auto.conf"} {
				if !exists(f) {
					t.Errorf("a killed backup-fetch left pg_control in %s, but no %s", dest, f)
				}
			}
		}
	}
	os.RemoveAll(dest)
	mustRun(t, env, fetch...)
	rc := pgtest.Attach(t, dest, pgtest.Options{Conf: []string{"archive_mode = off"}})
	rc.Start(t)
	rc.WaitPromoted(t, 3*time.Minute)
	got := rc.AllTableDigests(t, "postgres")
	rc.Stop(t)
	if !reflect.DeepEqual(got, want) {
		summary.mismatches.Add(1)
		t.Errorf("restore to the restore point whose first creation was killed differs from the source when it was recorded:\n%s", diffDigests(got, want))
	}

	// wal-push, into a repository of its own: killed before it records
	// the repository's identity, before the segment's upload reaches the
	// server, after it did (the confirmation is held), and at random
	// times. In between, a segment is absent or whole; pushed again, it
	// comes back byte-identical.
	walEnv := append(srv.Env(srv.NewBucket(t)), "WALRUS_S3_ENDPOINT="+tr.proxy.URL(), "WALRUS_AGE_RECIPIENTS="+recipient, "WALRUS_AGE_IDENTITY_FILE="+identity, "WALRUS_COMPRESSION=zstd")
	segs := copySegments(t, c, 3+crashRounds())
	fetchDir := t.TempDir()
	// fresh: the killed push was the repository's first, killed around
	// the store of walrus.json. A place without walrus.json holds no WAL,
	// and wal-fetch refuses it (exit 128) rather than call the segment
	// not found (TRAPS.md 1).
	absentOrWhole := func(seg string, fresh bool) {
		t.Helper()
		dest := filepath.Join(fetchDir, filepath.Base(seg))
		os.Remove(dest)
		r := run(t, walEnv, "wal-fetch", filepath.Base(seg), dest)
		switch {
		case r.code == 1:
		case r.code == 128 && fresh && strings.Contains(r.stderr, "has no walrus.json"):
		case r.code == 0:
			sameFile(t, seg, dest)
		default:
			t.Errorf("wal-fetch %s after a killed push: exit %d\n%s", filepath.Base(seg), r.code, r.stderr)
		}
	}
	pushAgain := func(seg string, fresh bool) {
		t.Helper()
		absentOrWhole(seg, fresh)
		mustRun(t, walEnv, "wal-push", seg)
		dest := filepath.Join(fetchDir, filepath.Base(seg))
		os.Remove(dest)
		mustRun(t, walEnv, "wal-fetch", filepath.Base(seg), dest)
		sameFile(t, seg, dest)
	}
	killAt(t, tr, walEnv, request("PUT", "/walrus.json"), "wal-push", segs[0])
	pushAgain(segs[0], true)
	killAt(t, tr, walEnv, request("PUT", "/wal/"+filepath.Base(segs[1])), "wal-push", segs[1])
	pushAgain(segs[1], false)
	killAt(t, tr, walEnv, after(request("PUT", "/wal/"+filepath.Base(segs[2])), request("HEAD", "/wal/"+filepath.Base(segs[2]))), "wal-push", segs[2])
	pushAgain(segs[2], false)
	for _, seg := range segs[3:] {
		killAfter(t, walEnv, time.Duration(rng.IntN(400))*time.Millisecond, "wal-push", seg)
		pushAgain(seg, false)
	}
}

// copySegments waits until n whole segments of c are archived, copies
// them out of pg_wal and returns the copies' paths.
func copySegments(t *testing.T, c *pgtest.Cluster, n int) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for range n {
		seg := archiveOneSegment(t, c)
		src := filepath.Join(c.DataDir(), "pg_wal", seg)
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, seg)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func sameFile(t *testing.T, want, got string) {
	t.Helper()
	a, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	if err != nil || !bytes.Equal(a, b) {
		t.Errorf("%s: fetched copy differs from the pushed file (err %v)", filepath.Base(want), err)
	}
}

// TestParallelWALPushProcesses: several wal-push processes of distinct
// segments start at once on a new repository (so they race to create its
// walrus.json, too); every one succeeds and every segment comes back
// byte-identical. On the filesystem and on S3.
func TestParallelWALPushProcesses(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, pgtest.Options{WALSegSizeMB: 1, Conf: []string{"wal_keep_size = '1GB'"}})
	c.Start(t)
	c.Exec(t, "CREATE TABLE t (id int, v text)")
	var segs []string
	dir := t.TempDir()
	for range 8 {
		c.Exec(t, "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g")
		seg := c.QueryRow(t, "SELECT pg_walfile_name(pg_switch_wal())")
		b, err := os.ReadFile(filepath.Join(c.DataDir(), "pg_wal", seg))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, seg)
		os.WriteFile(p, b, 0o600)
		segs = append(segs, p)
	}
	for _, sk := range storages {
		t.Run(sk.name, func(t *testing.T) {
			env, _ := sk.setup(t)
			var cmds []*exec.Cmd
			var outs []*syncBuffer
			for _, seg := range segs {
				cmd, stderr := startWalrus(t, env, "wal-push", seg)
				cmds, outs = append(cmds, cmd), append(outs, stderr)
			}
			for i, cmd := range cmds {
				if err := cmd.Wait(); err != nil {
					t.Errorf("wal-push %s, one of %d at once: %v\n%s", filepath.Base(segs[i]), len(segs), err, outs[i].String())
				}
			}
			out := t.TempDir()
			for _, seg := range segs {
				dest := filepath.Join(out, filepath.Base(seg))
				mustRun(t, env, "wal-fetch", filepath.Base(seg), dest)
				sameFile(t, seg, dest)
			}
		})
	}
}
