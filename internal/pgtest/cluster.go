package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options configure a throwaway cluster.
type Options struct {
	// Conf are extra postgresql.conf lines, e.g.
	// "archive_mode = on", "archive_command = '... %p'". They come after
	// the harness's own settings and so override them. New appends them to
	// postgresql.conf, Attach to postgresql.auto.conf.
	Conf []string
	// WALSegSizeMB is initdb's --wal-segsize; 0 means PostgreSQL's default.
	WALSegSizeMB int
	// InitDB makes Attach run initdb in its (absent or empty) directory
	// first. New always runs initdb.
	InitDB bool
	// Env are extra "KEY=value" environment entries of the server, and so of
	// its archive_command and restore_command, on top of Env().
	Env []string
}

// Cluster is a throwaway PostgreSQL cluster that runs as the postgres OS
// user, listens on 127.0.0.1 only and on a socket in its own directory. Its
// methods may be used from several goroutines.
type Cluster struct {
	dir     string // socket directory and server log; removed at cleanup
	dataDir string
	logFile string
	env     []string

	mu      sync.Mutex
	port    int
	running bool
}

// startAttempts bounds how often Start picks a new port when another
// process took the one it chose.
const startAttempts = 5

// startTimeout bounds pg_ctl start -w; a restored cluster may replay a lot
// of WAL before it accepts connections.
const startTimeout = 300 * time.Second

// baseConf is what every cluster New creates runs with: fast for tests
// (fsync off is safe against process crashes, only an OS crash loses
// data), small, and ready for archiving and base backups.
var baseConf = []string{
	"listen_addresses = '127.0.0.1'",
	"fsync = off",
	"full_page_writes = on",
	"wal_level = replica",
	"max_wal_senders = 4",
	"max_replication_slots = 4",
	"max_connections = 40",
	"shared_buffers = 16MB",
	"log_line_prefix = '%m [%p] %b '",
	"log_checkpoints = on",
	"logging_collector = off",
}

// New initializes a cluster (initdb --data-checksums -U postgres
// --auth=trust, locale C, UTF8) in a fresh temporary directory and picks a
// free port; it does not start it. Cleanup stops the server, however the
// test ended, and removes the directory. The test fails at once if the
// PostgreSQL binaries (BinDir) are missing.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := newCluster(t, opts)
	c.dataDir = filepath.Join(c.dir, "data")
	c.initDB(t, opts)
	appendConf(t, filepath.Join(c.dataDir, "postgresql.conf"), append(append([]string(nil), baseConf...), opts.Conf...))
	return c
}

// Attach wraps an existing data directory, e.g. a restored backup: it gives
// the directory (and the targets of its tablespace links) to the postgres
// user, sets mode 0700, and appends opts.Conf to postgresql.auto.conf. With
// opts.InitDB it first runs initdb there. The port, socket directory and
// listen address are passed on the command line at Start, so whatever the
// directory's configuration says about them is overridden. Cleanup stops
// the server but leaves dataDir to its owner. Every directory above
// dataDir must be traversable by the postgres user (a SharedDir is).
func Attach(t testing.TB, dataDir string, opts Options) *Cluster {
	t.Helper()
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		t.Fatalf("pgtest: attach %s: %v", dataDir, err)
	}
	if err := checkReachable(filepath.Dir(abs)); err != nil {
		t.Fatalf("pgtest: attach %s: %v", abs, err)
	}
	c := newCluster(t, opts)
	c.dataDir = abs
	if opts.InitDB {
		c.initDB(t, opts)
		appendConf(t, filepath.Join(c.dataDir, "postgresql.conf"), baseConf)
	}
	if _, err := os.Stat(filepath.Join(abs, "PG_VERSION")); err != nil {
		t.Fatalf("pgtest: attach %s: not a data directory: %v", abs, err)
	}
	ChownPostgres(t, abs)
	links, err := os.ReadDir(filepath.Join(abs, "pg_tblspc"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pgtest: attach %s: %v", abs, err)
	}
	for _, l := range links {
		target, err := filepath.EvalSymlinks(filepath.Join(abs, "pg_tblspc", l.Name()))
		if err != nil {
			t.Fatalf("pgtest: attach %s: tablespace %s: %v", abs, l.Name(), err)
		}
		if target != filepath.Join(abs, "pg_tblspc", l.Name()) {
			ChownPostgres(t, target)
		}
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		t.Fatalf("pgtest: attach: %v", err)
	}
	if len(opts.Conf) > 0 {
		appendConf(t, filepath.Join(abs, "postgresql.auto.conf"), opts.Conf)
	}
	return c
}

// newCluster makes the cluster's own directory and registers the cleanup.
func newCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if p := filepath.Join(BinDir(), "postgres"); !isExecutable(p) {
		t.Fatalf("pgtest: PostgreSQL server binary %s is missing: install PostgreSQL 15 or set PG_BINDIR", p)
	}
	mustPostgresUser(t)
	c := &Cluster{
		dir:  makeTempDir(t, "walrus-pgtest-"),
		env:  append([]string(nil), opts.Env...),
		port: freePort(t),
	}
	c.logFile = filepath.Join(c.dir, "postgresql.log")
	// Registered after makeTempDir's removal, so it runs before it.
	t.Cleanup(func() { c.cleanup(t) })
	return c
}

func (c *Cluster) initDB(t testing.TB, opts Options) {
	t.Helper()
	args := []string{"-D", c.dataDir, "--data-checksums", "-U", "postgres", "--auth=trust",
		"--locale=C", "--encoding=UTF8", "--no-sync", "--no-instructions"}
	if opts.WALSegSizeMB != 0 {
		args = append(args, "--wal-segsize="+strconv.Itoa(opts.WALSegSizeMB))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := runAsPostgres(ctx, nil, "initdb", args...); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
}

// appendConf appends lines to a configuration file.
func appendConf(t testing.TB, path string, lines []string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	_, err = io.WriteString(f, "\n# added by pgtest\n"+strings.Join(lines, "\n")+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("pgtest: write %s: %v", path, err)
	}
	ChownPostgres(t, path)
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no other cluster of this process got. Another process may still
// take it; Start then picks another.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pgtest: find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports[port] {
			ports[port] = true
			return port
		}
	}
	t.Fatalf("pgtest: find a free port: every port offered was taken")
	return 0
}

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogFile is the path of the server log.
func (c *Cluster) LogFile() string { return c.logFile }

// SocketDir is the directory of the server's Unix socket.
func (c *Cluster) SocketDir() string { return c.dir }

// Port is the server's TCP port. It may change when Start has to pick
// another, so read it after Start.
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// DSN is the URL to connect as postgres to the postgres database.
func (c *Cluster) DSN() string { return c.DSNFor("postgres") }

// DSNFor is the URL to connect as postgres to database db.
func (c *Cluster) DSNFor(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port(), db)
}

// LogTail returns the last n lines of the server log.
func (c *Cluster) LogTail(n int) string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return tailLines(b, n)
}

func tailLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Start starts the server (pg_ctl start -w) as the postgres user and
// waits until it accepts connections (or, recovering, read-only ones). It
// fails the test with the tail of the server log if the server does not
// come up.
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	if err := c.TryStart(t); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// TryStart is Start for a test that expects the start to fail (a recovery
// that must stop with an error, for example): it returns an error with the
// tail of the server log instead of failing the test.
func (c *Cluster) TryStart(t testing.TB) error {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return fmt.Errorf("start %s: already running", c.dataDir)
	}
	for attempt := 1; ; attempt++ {
		logStart := fileSize(c.logFile)
		opts := fmt.Sprintf("-p %d -k '%s' -c listen_addresses=127.0.0.1", c.port, c.dir)
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout+time.Minute)
		cmd, err := Command(ctx, "pg_ctl", "start", "-w", "-t", strconv.Itoa(int(startTimeout.Seconds())),
			"-D", c.dataDir, "-l", c.logFile, "-o", opts)
		if err != nil {
			cancel()
			return fmt.Errorf("start %s: %w", c.dataDir, err)
		}
		cmd.Env = append(cmd.Env, c.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil {
			c.running = true
			return nil
		}
		// pg_ctl -w can time out with the server still starting; make
		// sure the cleanup stops it.
		if fileExists(filepath.Join(c.dataDir, "postmaster.pid")) {
			c.running = true
		}
		newLog := readFrom(c.logFile, logStart)
		if attempt < startAttempts && !c.running && strings.Contains(newLog, "could not bind IPv4 address") {
			c.port = freePort(t)
			continue
		}
		return fmt.Errorf("start %s on port %d: pg_ctl: %v\n%s\n--- server log (last 40 lines) ---\n%s",
			c.dataDir, c.port, err, bytes.TrimSpace(out), c.LogTail(40))
	}
}

// Stop stops the server (pg_ctl stop -m fast -w). Stopping a stopped
// cluster does nothing.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.stop("fast"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// StopImmediate stops the server as a crash would (pg_ctl stop -m
// immediate): the next start runs crash recovery.
func (c *Cluster) StopImmediate(t testing.TB) {
	t.Helper()
	if err := c.stop("immediate"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Restart stops the server (fast) and starts it again.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// Running reports whether the harness started the server and has not
// stopped it (a server that exited by itself still counts until Stop).
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

func (c *Cluster) stop(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	if !fileExists(filepath.Join(c.dataDir, "postmaster.pid")) {
		c.running = false // it exited by itself
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := runAsPostgres(ctx, nil, "pg_ctl", "stop", "-D", c.dataDir, "-m", mode, "-w", "-t", "240")
	if err != nil && fileExists(filepath.Join(c.dataDir, "postmaster.pid")) {
		return fmt.Errorf("stop %s (%s): %v\n%s\n--- server log (last 40 lines) ---\n%s",
			c.dataDir, mode, err, bytes.TrimSpace(out), c.LogTail(40))
	}
	c.running = false
	return nil
}

// Promote ends recovery (pg_ctl promote -w), switching to a new timeline.
func (c *Cluster) Promote(t testing.TB) {
	t.Helper()
	out, err := RunAsPostgres(t, "pg_ctl", "promote", "-D", c.dataDir, "-w", "-t", "240")
	if err != nil {
		t.Fatalf("pgtest: promote %s: %v\n%s\n--- server log (last 40 lines) ---\n%s", c.dataDir, err, out, c.LogTail(40))
	}
}

// cleanup stops the server however the test ended; after a failure it
// logs the tail of the server log.
func (c *Cluster) cleanup(t testing.TB) {
	if t.Failed() {
		t.Logf("pgtest: server log of %s (last 60 lines):\n%s", c.dataDir, c.LogTail(60))
	}
	c.mu.Lock()
	c.running = c.running || fileExists(filepath.Join(c.dataDir, "postmaster.pid"))
	c.mu.Unlock()
	if err := c.stop("immediate"); err != nil {
		t.Errorf("pgtest: cleanup: %v", err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the content of p from offset off on.
func readFrom(p string, off int64) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
