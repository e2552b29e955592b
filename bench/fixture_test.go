package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
)

// Settings of the backup benchmarks, read from the environment.
//
//	WALRUS_BENCH_SCALE        pgbench scale of the database (default 100,
//	                          about 1.5 GB; 5 makes a quick run)
//	WALRUS_BENCH_RUNS         runs of each operation; the median is printed
//	                          (default 3)
//	WALRUS_BENCH_EXTRA_SCALE  pgbench scale for the slow codecs brotli,
//	                          lzma and none, run once each (default 5)
//	WALRUS_BENCH_CODECS       codecs measured in full (default "lz4,zstd")
//	WALRUS_BENCH_EXTRA_CODECS codecs run once at the extra scale (default
//	                          "brotli,lzma,none"; "-" for none)
//	WALRUS_BENCH_ENV          settings for every walrus command but
//	                          wal-push, e.g. "WALRUS_S3_PART_SIZE=8388608"
//	WALRUS_BENCH_DIR          where restores go (default: the temporary
//	                          directory; see restoreDir)
//	WALRUS_BENCH_SEGMENTS     WAL segments archived (BenchmarkWAL,
//	                          BenchmarkPeers), or recovered
//	                          (BenchmarkRecovery); default 100
//	WALRUS_BENCH_RECOVERY_SCALE pgbench scale of BenchmarkRecovery's
//	                          cluster (default 10)
//	WALRUS_BENCH_REPO         fs (default) or s3: BenchmarkBackupInProcess
//	WALRUS_BENCH_TRACE        print the phases of BenchmarkBackupInProcess
func settingInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func settingList(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// usage is what one measured process (and its waited-for children) cost.
type usage struct {
	wall time.Duration
	// cpu is user + system time of the process and its children.
	cpu time.Duration
	// rssKiB is the peak resident set size of the process (or of its
	// largest child), in KiB.
	rssKiB int64
	// serverCPU is the CPU the S3 server used meanwhile, when known.
	serverCPU time.Duration
	// readMB and writtenMB are what the process read from and wrote to
	// the disk (not the page cache), in MB.
	readMB, writtenMB float64
}

func (u usage) rssMiB() float64 { return float64(u.rssKiB) / 1024 }

// medianUsage returns the run with the median wall time.
func medianUsage(us []usage) usage {
	s := slices.Clone(us)
	slices.SortFunc(s, func(a, b usage) int { return int(a.wall - b.wall) })
	return s[len(s)/2]
}

// measure runs cmd to its end and returns its stdout and what it cost;
// cpuOf, when not nil, is sampled before and after (the S3 server's CPU).
// A non-zero exit fails b with the command's stderr.
func measure(b *testing.B, cmd *exec.Cmd, cpuOf func() time.Duration) (string, usage) {
	b.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var srv0 time.Duration
	if cpuOf != nil {
		srv0 = cpuOf()
	}
	start := time.Now()
	err := cmd.Run()
	u := usage{wall: time.Since(start)}
	if cpuOf != nil {
		u.serverCPU = cpuOf() - srv0
	}
	if err != nil {
		b.Fatalf("%s: %v\n%s%s", strings.Join(cmd.Args, " "), err, stderr.String(), stdout.String())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		u.rssKiB = ru.Maxrss
		u.readMB, u.writtenMB = float64(ru.Inblock)*512/1e6, float64(ru.Oublock)*512/1e6
	}
	return stdout.String(), u
}

// processCPU returns the user + system CPU time pid has used so far, read
// from /proc; 0 when it cannot be read.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15 (clock ticks of 1/100 s).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// pidListening finds the process whose command line holds every one of
// words (e.g. the versitygw serving a port); 0 if there is none.
func pidListening(words ...string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cl, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cl), "\x00")
		ok := true
		for _, w := range words {
			if !slices.Contains(args, w) {
				ok = false
				break
			}
		}
		if ok {
			return pid
		}
	}
	return 0
}

// benchDB is a running PostgreSQL 15 cluster holding a pgbench database,
// vacuumed and frozen, that archives its WAL into one target at a time:
// archive_command runs a dispatching script, which runs the active
// target's script (archiveTo). WAL written while no target is active is discarded:
// a benchmark's backups need only the WAL from their own start.
type benchDB struct {
	c      *pgtest.Cluster
	dir    string // owned by postgres
	scale  int
	walrus string
}

// newBenchDB creates, starts and fills the cluster.
func newBenchDB(b *testing.B, scale int) *benchDB {
	b.Helper()
	d := &benchDB{dir: pgtest.SharedDir(b), scale: scale, walrus: testbin.Walrus(b)}
	dispatch := fmt.Sprintf(`#!/bin/sh
# archive_command of the benchmark cluster: run the active target's script.
t=%s
[ -e "$t" ] || exit 0
exec /bin/sh "$t" "$1"
`, d.targetScript())
	// pgBackRest refuses to back up a cluster whose archive_command does
	// not contain "pgbackrest": hence the name.
	script := filepath.Join(d.dir, "archive-walrus-or-pgbackrest.sh")
	if err := os.WriteFile(script, []byte(dispatch), 0o755); err != nil {
		b.Fatal(err)
	}
	d.c = pgtest.New(b, pgtest.Options{Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s %%p'", script),
		"shared_buffers = '128MB'",
		"max_wal_size = '4GB'",
		"checkpoint_timeout = '1h'",
	}})
	d.c.Start(b)
	start := time.Now()
	pgtest.Pgbench(b, d.c, "-i", "-s", strconv.Itoa(scale), "-q")
	d.c.Exec(b, "VACUUM (FREEZE, ANALYZE)")
	d.c.Exec(b, "CHECKPOINT")
	fmt.Printf("# pgbench scale %d: %s of data files, built in %s\n", scale, mb(d.size(b)), time.Since(start).Round(time.Second))
	return d
}

func (d *benchDB) targetScript() string { return filepath.Join(d.dir, "archive-target.sh") }

// size is the size of the database cluster's files (pg_database_size of
// every database plus pg_wal is not what a backup reads; this walks the
// data directory without pg_wal).
func (d *benchDB) size(b *testing.B) int64 {
	var n int64
	filepath.Walk(d.c.DataDir(), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if fi.IsDir() && fi.Name() == "pg_wal" {
			return filepath.SkipDir
		}
		if fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// archiveTo waits until PostgreSQL has archived every ready segment (into
// the previous target), then makes script (a shell script body that
// archives the file $1) the active target and switches to a new segment,
// so that everything written from now on is archived there.
func (d *benchDB) archiveTo(b *testing.B, script string) {
	b.Helper()
	d.waitArchiverIdle(b)
	tmp := d.targetScript() + ".tmp"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, d.targetScript()); err != nil {
		b.Fatal(err)
	}
	d.c.Exec(b, "SELECT pg_switch_wal()")
	d.waitArchiverIdle(b)
}

// waitArchiverIdle waits until no segment is ready to archive.
func (d *benchDB) waitArchiverIdle(b *testing.B) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ready, _ := filepath.Glob(filepath.Join(d.c.DataDir(), "pg_wal", "archive_status", "*.ready"))
		if len(ready) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("archiver still has %d segments ready after 5 minutes\n%s", len(ready), d.c.LogTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// touch updates one row on every page of pgbench_accounts whose number is
// a multiple of every: 1/every of its pages (plus the pages the new row
// versions and their index entries land on).
func (d *benchDB) touch(b *testing.B, every int) {
	b.Helper()
	d.c.Exec(b, fmt.Sprintf(`UPDATE pgbench_accounts SET abalance = abalance + 1
WHERE (ctid::text::point)[0]::int %% %d = 0 AND (ctid::text::point)[1] = 1`, every))
	d.c.Exec(b, "CHECKPOINT")
}

// walrusTarget is a walrus repository the benchmark writes to: its
// environment (for backup-push, backup-fetch and, through archiveTo, for
// wal-push), and the S3 server's process for its CPU time.
type walrusTarget struct {
	name string
	env  []string
	pid  int // the S3 server, or 0
}

// cpuOf samples the S3 server's CPU time, or is nil for the filesystem.
func (t walrusTarget) cpuOf() func() time.Duration {
	if t.pid == 0 {
		return nil
	}
	return func() time.Duration { return processCPU(t.pid) }
}

// archiveScript is the archive target script body that pushes $1 into t.
// The WAL is stored with lz4 whatever codec the backups use, one segment
// per call (wal_push_concurrency 1: pushing ahead is not measured here).
func (t walrusTarget) archiveScript(walrus string) string {
	var s strings.Builder
	for _, kv := range t.env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "WALRUS_COMPRESSION" {
			continue
		}
		fmt.Fprintf(&s, "export %s=%s\n", k, shellQuote(v))
	}
	fmt.Fprintf(&s, "export WALRUS_COMPRESSION=lz4 WALRUS_WAL_PUSH_CONCURRENCY=1\nexec %s wal-push \"$1\"", shellQuote(walrus))
	return s.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// walrusCmd is walrus with args and env, as the benchmark runs it: as
// root, with a clean environment.
// WALRUS_BENCH_ENV adds settings ("KEY=value,KEY=value", e.g.
// WALRUS_S3_PART_SIZE=8388608) to every walrus command but wal-push.
func (d *benchDB) walrusCmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(d.walrus, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "WALRUS_POSTGRES_DSN=" + d.c.DSN()}, env...)
	cmd.Env = append(cmd.Env, settingList("WALRUS_BENCH_ENV", "")...)
	return cmd
}

// listed is one backup as backup-list --json shows it.
type listed struct {
	Name       string `json:"name"`
	DataSize   int64  `json:"data_size"`
	StoredSize int64  `json:"stored_size"`
}

// backupInfo returns backup-list's entry for name.
func (d *benchDB) backupInfo(b *testing.B, env []string, name string) listed {
	b.Helper()
	out, _ := measure(b, d.walrusCmd(env, "backup-list", "--json"), nil)
	var doc struct {
		Backups []listed `json:"backups"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		var list []listed
		if err2 := json.Unmarshal([]byte(out), &list); err2 != nil {
			b.Fatalf("backup-list --json: %v\n%s", err, out)
		}
		doc.Backups = list
	}
	for _, bk := range doc.Backups {
		if bk.Name == name {
			return bk
		}
	}
	b.Fatalf("backup %s is not listed:\n%s", name, out)
	return listed{}
}

// pushResult is one measured backup-push.
type pushResult struct {
	name string
	use  usage
	info listed
}

// push runs backup-push with args into t and measures it.
func (d *benchDB) push(b *testing.B, t walrusTarget, codec string, args ...string) pushResult {
	b.Helper()
	env := append(slices.Clone(t.env), "WALRUS_COMPRESSION="+codec)
	out, u := measure(b, d.walrusCmd(env, append([]string{"backup-push", d.c.DataDir()}, args...)...), t.cpuOf())
	name := strings.TrimSpace(out)
	return pushResult{name: name, use: u, info: d.backupInfo(b, t.env, name)}
}

// fetch runs backup-fetch of name from t into a new directory, measures
// it, and removes the directory.
func (d *benchDB) fetch(b *testing.B, t walrusTarget, name string) usage {
	b.Helper()
	dest := filepath.Join(restoreDir(b), "restored")
	_, u := measure(b, d.walrusCmd(t.env, "backup-fetch", dest, name, "--target-immediate"), t.cpuOf())
	removeRestore(b, dest)
	return u
}

// restoreDir returns a new empty directory, reachable by the postgres
// user, under WALRUS_BENCH_DIR (default: the system's temporary
// directory), removed when b ends. A restore creates thousands of files,
// and ext4 without a journal makes that slow where many files were
// deleted lately (see removeRestore): on a machine where other work
// churns /tmp, a directory elsewhere on the same disk keeps that noise
// out of the figures.
func restoreDir(b *testing.B) string {
	b.Helper()
	base := os.Getenv("WALRUS_BENCH_DIR")
	if base == "" {
		return pgtest.SharedDir(b)
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		b.Fatal(err)
	}
	d, err := os.MkdirTemp(base, "restore-")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	pgtest.ChownPostgres(b, d)
	return d
}

// removeRestore removes a restored directory and waits until the file
// system no longer counts its inodes as recently deleted: ext4 without a
// journal (as here) skips such inodes when it allocates new ones, for 5 s
// after their deletion is on disk, which made the next restore's file
// creations several times slower and the figures noisy.
func removeRestore(b *testing.B, dir string) {
	b.Helper()
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	syscall.Sync()
	time.Sleep(6 * time.Second)
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// table prints rows of figures in aligned columns.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print() {
	w := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			w[i] = max(w[i], len(c))
		}
	}
	line := func(r []string) {
		var s strings.Builder
		s.WriteString("|")
		for i, c := range r {
			if i == 0 {
				fmt.Fprintf(&s, " %-*s |", w[i], c)
			} else {
				fmt.Fprintf(&s, " %*s |", w[i], c)
			}
		}
		fmt.Println(s.String())
	}
	line(t.head)
	sep := make([]string, len(w))
	for i := range w {
		sep[i] = strings.Repeat("-", w[i])
	}
	fmt.Println("|-" + strings.Join(sep, "-|-") + "-|")
	for _, r := range t.rows {
		line(r)
	}
}
