package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/pg"
)

// BenchmarkArchiveBacklog answers issue 7's "no .ready backlog while
// pgbench -c 4 writes": a cluster archives with archive_command = walrus
// wal-push at default settings (wal_push_concurrency 4, lz4) while
// pgbench -c 4 -j 2 runs for WALRUS_BENCH_BACKLOG_SECONDS (default 60) on
// a database of scale WALRUS_BENCH_BACKLOG_SCALE (default 20), to the
// filesystem repository and to S3 (versitygw, --keep-alive). Every 100 ms
// it counts pg_wal/archive_status/*.ready; it prints the WAL written, the
// largest and the mean backlog of ready segments, and how long the
// archiver took to drain after pgbench stopped. PostgreSQL marks a
// segment ready when it is complete, so a backlog of 0 or 1 at every
// sample means archiving keeps up. It asserts nothing about speed.
func BenchmarkArchiveBacklog(b *testing.B) {
	scale := settingInt("WALRUS_BENCH_BACKLOG_SCALE", 20)
	seconds := settingInt("WALRUS_BENCH_BACKLOG_SECONDS", 60)
	d := newBenchDB(b, scale)
	srv := s3test.Start(b, s3test.KeepAlive())
	targets := []walrusTarget{fsTarget(b), s3Target(b, srv, "s3")}
	var tab table
	tab.head = []string{"repo", "pgbench s", "tps", "WAL MB", "WAL MB/s", "segments", "max ready", "mean ready", "drain s"}
	for _, t := range targets {
		var s strings.Builder
		for _, kv := range t.env {
			k, v, _ := strings.Cut(kv, "=")
			fmt.Fprintf(&s, "export %s=%s\n", k, shellQuote(v))
		}
		// Default settings: lz4, wal_push_concurrency 4.
		fmt.Fprintf(&s, "exec %s wal-push \"$1\"", shellQuote(d.walrus))
		d.archiveTo(b, s.String())

		startLSN, err := pg.ParseLSN(strings.TrimSpace(d.c.QueryRow(b, "SELECT pg_current_wal_lsn()")))
		if err != nil {
			b.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var samples, sum, most int
		status := filepath.Join(d.c.DataDir(), "pg_wal", "archive_status")
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					ready, _ := filepath.Glob(filepath.Join(status, "*.ready"))
					samples++
					sum += len(ready)
					most = max(most, len(ready))
				}
			}
		})
		began := time.Now()
		out := pgtest.Pgbench(b, d.c, "-c", "4", "-j", "2", "-T", strconv.Itoa(seconds))
		ran := time.Since(began)
		close(stop)
		wg.Wait()
		endLSN, err := pg.ParseLSN(strings.TrimSpace(d.c.QueryRow(b, "SELECT pg_current_wal_lsn()")))
		if err != nil {
			b.Fatal(err)
		}
		drainStart := time.Now()
		d.waitArchiverIdle(b)
		drain := time.Since(drainStart)
		walMB := float64(endLSN-startLSN) / 1e6
		tps := "-"
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "tps = ") {
				tps = strings.Fields(line)[2]
			}
		}
		mean := 0.0
		if samples > 0 {
			mean = float64(sum) / float64(samples)
		}
		fmt.Printf("# %s: pgbench -c 4 for %s, %s tps, %.0f MB of WAL; ready segments max %d, mean %.2f over %d samples; drained in %s\n",
			t.name, ran.Round(time.Second), tps, walMB, most, mean, samples, drain.Round(10*time.Millisecond))
		tab.add(t.name, fmt.Sprintf("%.0f", ran.Seconds()), tps, fmt.Sprintf("%.0f", walMB), fmt.Sprintf("%.1f", walMB/ran.Seconds()),
			fmt.Sprintf("%.0f", walMB*1e6/float64(16<<20)), strconv.Itoa(most), fmt.Sprintf("%.2f", mean), fmt.Sprintf("%.2f", drain.Seconds()))
	}
	d.archiveTo(b, "exit 0")
	fmt.Fprintln(os.Stdout, "\narchive backlog while pgbench -c 4 writes (walrus wal-push, default settings):")
	tab.print()
}
