package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/internal/testbin"
)

// envInt reads a positive integer setting of the benchmarks.
func walEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

var walSegmentName = regexp.MustCompile(`^[0-9A-F]{24}$`)

// walSource is a stopped cluster's pg_wal holding at least n ready 16 MiB
// segments of real WAL (pgbench initialisation and transactions).
type walSource struct {
	pgdata string
	segs   []string // the first n ready segments, in order
}

func makeWAL(b *testing.B, n int) walSource {
	b.Helper()
	if keep := os.Getenv("WALRUS_BENCH_WAL_DIR"); keep != "" {
		if w, ok := keptWAL(keep, n); ok {
			fmt.Printf("# using %d segments kept in %s\n", n, keep)
			return w
		}
		w := generateWAL(b, n)
		if err := os.MkdirAll(filepath.Join(keep, "pg_wal"), 0o700); err != nil {
			b.Fatal(err)
		}
		for _, s := range w.segs {
			if out, err := exec.Command("cp", filepath.Join(w.pgdata, "pg_wal", s), filepath.Join(keep, "pg_wal", s)).CombinedOutput(); err != nil {
				b.Fatalf("keep WAL: %v\n%s", err, out)
			}
		}
		return walSource{pgdata: keep, segs: w.segs}
	}
	return generateWAL(b, n)
}

// keptWAL uses segments kept by an earlier run (WALRUS_BENCH_WAL_DIR).
func keptWAL(dir string, n int) (walSource, bool) {
	entries, err := os.ReadDir(filepath.Join(dir, "pg_wal"))
	if err != nil {
		return walSource{}, false
	}
	var segs []string
	for _, e := range entries {
		if walSegmentName.MatchString(e.Name()) {
			segs = append(segs, e.Name())
		}
	}
	if len(segs) < n {
		return walSource{}, false
	}
	return walSource{pgdata: dir, segs: segs[:n]}, true
}

func generateWAL(b *testing.B, n int) walSource {
	b.Helper()
	c := pgtest.New(b, pgtest.Options{Conf: []string{
		// Archiving on without a command: PostgreSQL keeps every
		// segment and marks it ready, as a backlog would.
		"archive_mode = on",
		"archive_command = ''",
		"max_wal_size = '4GB'",
		"checkpoint_timeout = '1h'",
	}})
	c.Start(b)
	start := time.Now()
	// Initialisation writes the tables' pages; transactions after a
	// checkpoint write full-page images and small records, as a busy
	// server does.
	pgtest.Pgbench(b, c, "-i", "-s", strconv.Itoa(max(1, n*6/10)), "-q")
	for {
		ready, _ := filepath.Glob(filepath.Join(c.DataDir(), "pg_wal", "archive_status", "*.ready"))
		if len(ready) > n {
			break
		}
		c.Exec(b, "CHECKPOINT")
		pgtest.Pgbench(b, c, "-c", "4", "-j", "2", "-T", "10")
	}
	c.Stop(b)
	status := filepath.Join(c.DataDir(), "pg_wal", "archive_status")
	entries, err := os.ReadDir(status)
	if err != nil {
		b.Fatal(err)
	}
	var segs []string
	for _, e := range entries {
		if s, ok := strings.CutSuffix(e.Name(), ".ready"); ok && walSegmentName.MatchString(s) {
			segs = append(segs, s)
		}
	}
	sort.Strings(segs)
	if len(segs) < n {
		b.Fatalf("only %d ready segments", len(segs))
	}
	fmt.Printf("# generated %d segments of pgbench WAL in %s\n", len(segs), time.Since(start).Round(time.Second))
	return walSource{pgdata: c.DataDir(), segs: segs[:n]}
}

// fakeCluster is a data directory holding hard links to the source
// segments and a fresh archive_status with every segment ready, as
// PostgreSQL leaves it when archiving falls behind.
func (w walSource) fakeCluster(b *testing.B) string {
	b.Helper()
	d := filepath.Join(b.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(d, "pg_wal", "archive_status"), 0o700); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "PG_VERSION"), []byte("15\n"), 0o600)
	for _, s := range w.segs {
		src := filepath.Join(w.pgdata, "pg_wal", s)
		if err := os.Link(src, filepath.Join(d, "pg_wal", s)); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "pg_wal", "archive_status", s+".ready"), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return d
}

// run is one timed sequence of walrus processes.
type walRun struct {
	wall   time.Duration
	cpu    time.Duration // user + system of every process
	maxRSS int64         // KiB, the largest of any process
}

// walGNUTime is GNU time, used to read each process's own peak RSS: the
// rusage that Go's os/exec returns for a child includes the benchmark
// process's own peak, which its vfork-style spawn shares.
const walGNUTime = "/usr/bin/time"

// walrusCall runs walrus in dir with env, as PostgreSQL would, and adds
// its resource use to r.
func walrusCall(b *testing.B, r *walRun, dir string, env []string, args ...string) int {
	bin := testbin.Walrus(b)
	argv := append([]string{bin}, args...)
	stats := ""
	if _, err := os.Stat(walGNUTime); err == nil {
		stats = filepath.Join(b.TempDir(), "time")
		argv = append([]string{walGNUTime, "-o", stats, "-f", "%M %U %S"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		b.Fatalf("walrus %v: %v", args, err)
	}
	if stats != "" {
		var rss int64
		var user, sys float64
		if body, err := os.ReadFile(stats); err == nil {
			lines := strings.Split(strings.TrimSpace(string(body)), "\n")
			fmt.Sscan(lines[len(lines)-1], &rss, &user, &sys)
		}
		r.cpu += time.Duration((user + sys) * float64(time.Second))
		r.maxRSS = max(r.maxRSS, rss)
	} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.maxRSS = -1
	}
	code := cmd.ProcessState.ExitCode()
	if code != 0 && code != 1 {
		b.Fatalf("walrus %v: exit %d\n%s", args, code, stderr.String())
	}
	if code == 1 && args[0] == "wal-push" {
		b.Fatalf("walrus %v: exit 1\n%s", args, stderr.String())
	}
	return code
}

// archiveRun archives every segment of a fresh fake cluster, one wal-push
// process per segment in order, marking each done after exit 0 as
// PostgreSQL does.
func archiveRun(b *testing.B, w walSource, env []string, d string) walRun {
	if d == "" {
		d = w.fakeCluster(b)
	}
	var r walRun
	start := time.Now()
	for _, s := range w.segs {
		walrusCall(b, &r, d, env, "wal-push", filepath.Join("pg_wal", s))
		st := filepath.Join(d, "pg_wal", "archive_status", s)
		if err := os.Rename(st+".ready", st+".done"); err != nil {
			b.Fatal(err)
		}
	}
	r.wall = time.Since(start)
	return r
}

// daemonArchiveRun is archiveRun with a wal-push-daemon serving the fake
// cluster; the daemon's CPU and peak RSS count too.
func daemonArchiveRun(b *testing.B, w walSource, env []string) walRun {
	d := w.fakeCluster(b)
	stop := startPushDaemon(b, d, env)
	r := archiveRun(b, w, env, d)
	cpu, rss := stop()
	r.cpu += cpu
	r.maxRSS = max(r.maxRSS, rss)
	return r
}

// asyncEnv is what turns on wal_push_async for a run.
var asyncEnv = []string{"WALRUS_WAL_PUSH_ASYNC=true", "WALRUS_WAL_PUSH_ASYNC_IDLE=1m"}

// stopAsyncDaemon ends the wal-push-daemon that wal-push started in the
// data directory d (its ID is in daemon.lock) and returns its CPU time
// and peak RSS (KiB), read just before it is stopped.
func stopAsyncDaemon(b *testing.B, d string) (time.Duration, int64) {
	b.Helper()
	body, err := os.ReadFile(filepath.Join(d, "pg_wal", "archive_status", ".walrus", "daemon.lock"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil || pid <= 0 {
		b.Fatalf("wal_push_async: no daemon was started (%v)", err)
	}
	cpu := processCPU(pid)
	var rss int64
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &rss)
			}
		}
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(25 * time.Millisecond)
	}
	return cpu, rss
}

// asyncArchiveRun is archiveRun with wal_push_async: the first wal-push
// starts a wal-push-daemon, which serves the rest; its CPU and peak RSS
// count too.
func asyncArchiveRun(b *testing.B, w walSource, env []string) walRun {
	d := w.fakeCluster(b)
	r := archiveRun(b, w, append(append([]string{}, env...), asyncEnv...), d)
	cpu, rss := stopAsyncDaemon(b, d)
	r.cpu += cpu
	r.maxRSS = max(r.maxRSS, rss)
	return r
}

// startPushDaemon starts a wal-push-daemon for the data directory d with
// env and waits for its socket. stop ends it, checks that it served
// wal-push calls, and returns its CPU time and peak RSS (KiB).
func startPushDaemon(b *testing.B, d string, env []string) (stop func() (cpu time.Duration, rssKiB int64)) {
	b.Helper()
	cmd := exec.Command(testbin.Walrus(b), "wal-push-daemon")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "WALRUS_PGDATA=" + d}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(d, "pg_wal", "archive_status", ".walrus", "push.sock")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 1000 {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatalf("wal-push-daemon did not start:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() (time.Duration, int64) {
		b.Helper()
		if !strings.Contains(stderr.String(), "durable as") {
			b.Fatalf("wal-push went around the daemon:\n%s", stderr.String())
		}
		// The daemon's peak RSS (VmHWM), read before it exits.
		var rss int64
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
			for _, l := range strings.Split(string(st), "\n") {
				if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
					fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &rss)
				}
			}
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		var cpu time.Duration
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		return cpu, rss
	}
}

// fetchRun restores every segment in order into pg_wal/RECOVERYXLOG of a
// fresh data directory, one wal-fetch process per segment, as recovery
// does (without the replay between calls).
func fetchRun(b *testing.B, w walSource, env []string) walRun {
	d := filepath.Join(b.TempDir(), "data")
	os.MkdirAll(filepath.Join(d, "pg_wal"), 0o700)
	os.WriteFile(filepath.Join(d, "PG_VERSION"), []byte("15\n"), 0o600)
	var r walRun
	start := time.Now()
	for _, s := range w.segs {
		if walrusCall(b, &r, d, env, "wal-fetch", s, "pg_wal/RECOVERYXLOG") != 0 {
			b.Fatalf("wal-fetch %s: not found", s)
		}
		os.Remove(filepath.Join(d, "pg_wal", "RECOVERYXLOG"))
	}
	r.wall = time.Since(start)
	// Let the last prefetcher finish before the directory goes.
	time.Sleep(200 * time.Millisecond)
	return r
}

func walMedian(rs []walRun) walRun {
	sort.Slice(rs, func(i, j int) bool { return rs[i].wall < rs[j].wall })
	return rs[len(rs)/2]
}

// compressLimit compresses every segment with lz4 on all cores and
// returns segments per second: the machine's compress-only limit.
func compressLimit(b *testing.B, w walSource) (segsPerSec, mbPerSec float64, cpuPerSeg time.Duration) {
	codec, err := compress.ByName("lz4")
	if err != nil {
		b.Fatal(err)
	}
	data := make([][]byte, len(w.segs))
	var total int64
	for i, s := range w.segs {
		if data[i], err = os.ReadFile(filepath.Join(w.pgdata, "pg_wal", s)); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data[i]))
	}
	best := time.Duration(1 << 62)
	cpuPerSeg = time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		cpu0 := selfCPU()
		var wg sync.WaitGroup
		next := make(chan []byte)
		for range runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				for d := range next {
					zw, err := codec.NewWriter(io.Discard, 0)
					if err != nil {
						panic(err)
					}
					zw.Write(d)
					zw.Close()
				}
			})
		}
		for _, d := range data {
			next <- d
		}
		close(next)
		wg.Wait()
		best = min(best, time.Since(start))
		cpuPerSeg = min(cpuPerSeg, (selfCPU()-cpu0)/time.Duration(len(data)))
	}
	return float64(len(data)) / best.Seconds(), float64(total) / 1e6 / best.Seconds(), cpuPerSeg
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWAL archives WALRUS_BENCH_SEGMENTS (default 100) real 16 MiB
// segments one wal-push process per segment, as PostgreSQL calls it, with
// wal_push_concurrency 1 (no parallelism) and higher, to the filesystem
// repository and to S3 (versitygw on loopback, --keep-alive); then
// with a wal-push-daemon serving the same calls, and with wal_push_async
// (wal-push starts the daemon itself); then restores them one
// wal-fetch per segment with and without prefetch. Each
// figure is the median of WALRUS_BENCH_RUNS (default 3) runs. It prints
// the machine's compress-only limit (lz4 on all cores) for comparison.
// Run with -benchtime 1x.
func BenchmarkWAL(b *testing.B) {
	n := walEnvInt("WALRUS_BENCH_SEGMENTS", 100)
	runs := walEnvInt("WALRUS_BENCH_RUNS", 3)
	testbin.Walrus(b)
	w := makeWAL(b, n)
	srv := s3test.Start(b, s3test.KeepAlive())

	loadavg := func() string {
		l, _ := os.ReadFile("/proc/loadavg")
		return strings.Join(strings.Fields(string(l))[:3], " ")
	}
	fmt.Printf("# load average before: %s (other processes share the CPUs)\n", loadavg())
	defer func() { fmt.Printf("# load average after: %s\n", loadavg()) }()
	segs, mbs, cps := compressLimit(b, w)
	fmt.Printf("# %d CPUs; compress-only limit (lz4, all cores, in memory): %.1f segments/s (%.0f MB/s), %.1f ms CPU per segment\n", runtime.NumCPU(), segs, mbs, float64(cps)/1e6)
	fmt.Printf("# cpu/seg below is each mode's CPU (every process) per segment; compress-only needs %.1f ms\n", float64(cps)/1e6)
	b.ReportMetric(segs, "compress-segs/s")

	type target struct {
		name string
		env  func(b *testing.B) []string
	}
	targets := []target{
		{"fs", func(b *testing.B) []string { return []string{"WALRUS_REPO=" + filepath.Join(b.TempDir(), "repo")} }},
		{"s3", func(b *testing.B) []string { return srv.Env(srv.NewBucket(b)) }},
	}
	fmt.Printf("%-9s %-4s %-16s %8s %8s %8s %10s %12s\n", "op", "repo", "setting", "segs/s", "wall s", "cpu s", "cpu/seg ms", "max RSS MiB")
	print := func(op, repo, setting string, r walRun) {
		rss := "-"
		if r.maxRSS >= 0 {
			rss = fmt.Sprintf("%.1f", float64(r.maxRSS)/1024)
		}
		fmt.Printf("%-9s %-4s %-16s %8.1f %8.2f %8.2f %10.1f %12s\n", op, repo, setting,
			float64(n)/r.wall.Seconds(), r.wall.Seconds(), r.cpu.Seconds(), r.cpu.Seconds()*1000/float64(n), rss)
	}
	for _, tg := range targets {
		for _, conc := range []int{1, 2, 4, 8} {
			var rs []walRun
			for range runs {
				env := append(tg.env(b), "WALRUS_WAL_PUSH_CONCURRENCY="+strconv.Itoa(conc))
				rs = append(rs, archiveRun(b, w, env, ""))
			}
			m := walMedian(rs)
			print("wal-push", tg.name, fmt.Sprintf("concurrency=%d", conc), m)
			b.ReportMetric(float64(n)/m.wall.Seconds(), fmt.Sprintf("push-%s-c%d-segs/s", tg.name, conc))
		}
		for _, conc := range []int{3, 4} {
			var rs []walRun
			for range runs {
				env := append(tg.env(b), "WALRUS_WAL_PUSH_CONCURRENCY="+strconv.Itoa(conc))
				rs = append(rs, daemonArchiveRun(b, w, env))
			}
			m := walMedian(rs)
			print("wal-push", tg.name, fmt.Sprintf("daemon, conc.=%d", conc), m)
			b.ReportMetric(float64(n)/m.wall.Seconds(), fmt.Sprintf("push-%s-daemon-c%d-segs/s", tg.name, conc))
		}
		{
			var rs []walRun
			for range runs {
				rs = append(rs, asyncArchiveRun(b, w, tg.env(b)))
			}
			m := walMedian(rs)
			print("wal-push", tg.name, "async (defaults)", m)
			b.ReportMetric(float64(n)/m.wall.Seconds(), fmt.Sprintf("push-%s-async-segs/s", tg.name))
		}
		env := append(tg.env(b), "WALRUS_WAL_PUSH_CONCURRENCY=4")
		archiveRun(b, w, env, "")
		for _, pf := range []int{0, 8} {
			var rs []walRun
			for range runs {
				e := append(append([]string{}, env...), "WALRUS_WAL_PREFETCH="+strconv.Itoa(pf))
				rs = append(rs, fetchRun(b, w, e))
			}
			m := walMedian(rs)
			print("wal-fetch", tg.name, fmt.Sprintf("prefetch=%d", pf), m)
			b.ReportMetric(float64(n)/m.wall.Seconds(), fmt.Sprintf("fetch-%s-p%d-segs/s", tg.name, pf))
		}
	}
}
