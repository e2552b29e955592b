package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
)

// BenchmarkBackup measures walrus backup-push and backup-fetch of a
// pgbench database (WALRUS_BENCH_SCALE, default 100: about 1.5 GB) to the
// filesystem repository and to S3 (versitygw on loopback, --keep-alive):
// full backups with each codec of WALRUS_BENCH_CODECS (lz4 and zstd), each
// WALRUS_BENCH_RUNS times (3) with the median printed; a page delta after
// updates touching 1% and then 10% of the pages of pgbench_accounts, and
// its restore; and brotli, lzma and none once each on a database of
// WALRUS_BENCH_EXTRA_SCALE (5). For each it prints wall time, MB/s of
// database size, stored size, the CPU seconds and peak RSS of the walrus
// process, and the S3 server's CPU seconds. It asserts nothing about
// speed. Quick run:
//
//	WALRUS_BENCH_SCALE=5 WALRUS_BENCH_RUNS=1 go test -run '^$' -bench Backup -benchtime 1x ./bench/
func BenchmarkBackup(b *testing.B) {
	scale := settingInt("WALRUS_BENCH_SCALE", 100)
	runs := settingInt("WALRUS_BENCH_RUNS", 3)
	codecs := settingList("WALRUS_BENCH_CODECS", "lz4,zstd")
	extraScale := settingInt("WALRUS_BENCH_EXTRA_SCALE", 5)
	printMachine(scale)

	d := newBenchDB(b, scale)
	srv := s3test.Start(b, s3test.KeepAlive())
	targets := []walrusTarget{fsTarget(b), s3Target(b, srv, "s3")}
	tab := newResultTable()

	fulls := map[string]pushResult{} // by target: the lz4 (or first codec) full backup
	for _, t := range targets {
		d.archiveTo(b, t.archiveScript(d.walrus))
		for _, codec := range codecs {
			p, f := d.fullRuns(b, t, codec, runs)
			tab.push("full backup-push", t.name, codec, p)
			tab.fetch("backup-fetch", t.name, codec, p.info, f)
			if _, ok := fulls[t.name]; !ok {
				fulls[t.name] = p
			}
		}
	}
	deltaRuns(b, d, targets, fulls, codecs[0], runs, tab)

	extraCodecs := settingList("WALRUS_BENCH_EXTRA_CODECS", "brotli,lzma,none")
	if len(extraCodecs) == 1 && extraCodecs[0] == "-" {
		extraCodecs = nil
	}
	extra := d
	if extraScale < scale && len(extraCodecs) > 0 {
		extra = newBenchDB(b, extraScale)
	}
	for _, t := range targets {
		if len(extraCodecs) == 0 {
			break
		}
		t := t
		if t.pid != 0 {
			t = s3Target(b, srv, "s3") // a fresh bucket: another cluster
		} else {
			t = fsTarget(b)
		}
		extra.archiveTo(b, t.archiveScript(extra.walrus))
		for _, codec := range extraCodecs {
			p, f := extra.fullRuns(b, t, codec, 1)
			tab.push(fmt.Sprintf("full backup-push (scale %d)", extra.scale), t.name, codec, p)
			tab.fetch(fmt.Sprintf("backup-fetch (scale %d)", extra.scale), t.name, codec, p.info, f)
		}
	}
	b.StopTimer()
	fmt.Printf("\nwalrus backup benchmark: pgbench scale %d, median of %d runs (slow codecs: 1 run); MB/s of database size\n", scale, runs)
	tab.print()
}

// fullRuns takes runs full backups with codec into t and restores each,
// and returns the median push (with the backup of the last run, so that
// deltas can be based on it) and the median restore.
func (d *benchDB) fullRuns(b *testing.B, t walrusTarget, codec string, runs int) (pushResult, usage) {
	b.Helper()
	var pushes, fetches []usage
	var last pushResult
	for range runs {
		last = d.push(b, t, codec, "--full")
		pushes = append(pushes, last.use)
		fetches = append(fetches, d.fetch(b, t, last.name))
		f := fetches[len(fetches)-1]
		fmt.Printf("# walrus %s %s: full backup-push %s (CPU %s, disk read %.0f MB), backup-fetch %s (CPU %s, disk written %.0f MB)\n",
			t.name, codec, secs(last.use.wall), secs(last.use.cpu), last.use.readMB, secs(f.wall), secs(f.cpu), f.writtenMB)
	}
	last.use = medianUsage(pushes)
	return last, medianUsage(fetches)
}

// fsTarget is a fresh filesystem repository.
func fsTarget(b *testing.B) walrusTarget {
	return walrusTarget{name: "fs", env: []string{"WALRUS_REPO=" + filepath.Join(pgtest.SharedDir(b), "repo")}}
}

// s3Target is a fresh bucket on srv.
func s3Target(b *testing.B, srv *s3test.Server, name string) walrusTarget {
	addr := strings.TrimPrefix(srv.Endpoint, "http://")
	return walrusTarget{name: name, env: srv.Env(srv.NewBucket(b)), pid: pidListening(addr)}
}

// resultTable collects the rows of the walrus benchmark.
type resultTable struct{ t table }

func newResultTable() *resultTable {
	return &resultTable{t: table{head: []string{"operation", "repo", "codec", "wall s", "MB/s", "data MB", "stored MB", "stored %", "walrus CPU s", "S3 server CPU s", "peak RSS MiB"}}}
}

func (r *resultTable) row(op, repo, codec string, info listed, stored int64, u usage) {
	srv := "-"
	if repo != "fs" {
		srv = fmt.Sprintf("%.2f", u.serverCPU.Seconds())
	}
	storedCells := []string{"-", "-"}
	if stored >= 0 {
		storedCells = []string{fmt.Sprintf("%.1f", float64(stored)/1e6), fmt.Sprintf("%.1f", 100*float64(stored)/float64(info.DataSize))}
	}
	r.t.add(append(append([]string{op, repo, codec,
		fmt.Sprintf("%.2f", u.wall.Seconds()),
		fmt.Sprintf("%.0f", float64(info.DataSize)/1e6/u.wall.Seconds()),
		fmt.Sprintf("%.0f", float64(info.DataSize)/1e6)},
		storedCells...),
		fmt.Sprintf("%.2f", u.cpu.Seconds()), srv, fmt.Sprintf("%.1f", u.rssMiB()))...)
}

func (r *resultTable) push(op, repo, codec string, p pushResult) {
	r.row(op, repo, codec, p.info, p.info.StoredSize, p.use)
}

func (r *resultTable) fetch(op, repo, codec string, info listed, u usage) {
	r.row(op, repo, codec, info, -1, u)
}

func (r *resultTable) print() { r.t.print() }

// printMachine prints the facts a benchmark figure depends on.
func printMachine(scale int) {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			mem = f[1] + " kB"
		}
	}
	pgv := "?"
	if out, err := exec.Command(filepath.Join(pgtest.BinDir(), "postgres"), "--version").Output(); err == nil {
		pgv = strings.TrimSpace(string(out))
	}
	fmt.Printf("# machine: %d CPUs (%s), memory %s, %s, %s, %s/%s; pgbench scale %d; %s\n",
		runtime.NumCPU(), model, mem, runtime.Version(), pgv, runtime.GOOS, runtime.GOARCH, scale, time.Now().UTC().Format(time.RFC3339))
}
