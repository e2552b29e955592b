package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
)

// deltaScale is pgbench's scale for BenchmarkDeltaBackup:
// WALRUS_BENCH_DELTA_SCALE, default 10 (about 150 MB of data).
func deltaScale() int {
	if v, err := strconv.Atoi(os.Getenv("WALRUS_BENCH_DELTA_SCALE")); err == nil && v > 0 {
		return v
	}
	return 10
}

// BenchmarkDeltaBackup prints the time and stored size of a full backup of
// a pgbench database, and of delta backups of it after updates touching 1%
// and then 10% more of the pages of pgbench_accounts (one row per page
// touched). Each delta is based on the full backup. It asserts nothing
// about speed. Run it with make bench, or
//
//	WALRUS_BENCH_DELTA_SCALE=50 go test -run '^$' -bench DeltaBackup -benchtime 1x ./bench/
func BenchmarkDeltaBackup(b *testing.B) {
	scale := deltaScale()
	dir := pgtest.SharedDir(b)
	repoEnv := []string{"WALRUS_REPO=file://" + filepath.Join(dir, "repo")}
	wrapper := filepath.Join(dir, "walrus.sh")
	script := fmt.Sprintf("#!/bin/sh\nexport %s\nexec %s \"$@\"\n", repoEnv[0], testbin.Walrus(b))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		b.Fatal(err)
	}
	c := pgtest.New(b, pgtest.Options{Conf: []string{
		"archive_mode = on",
		fmt.Sprintf("archive_command = '%s wal-push %%p'", wrapper),
		"max_wal_size = '2GB'",
	}})
	c.Start(b)
	pgtest.Pgbench(b, c, "-i", "-s", strconv.Itoa(scale), "-q")
	c.Exec(b, "VACUUM (FREEZE, ANALYZE)")
	pages, _ := strconv.Atoi(c.QueryRow(b, "SELECT pg_relation_size('pgbench_accounts') / current_setting('block_size')::int"))
	env := append(append([]string{}, repoEnv...), "WALRUS_POSTGRES_DSN="+c.DSN())

	type row struct {
		what, name string
		took       time.Duration
		stored     int64
	}
	push := func(what string, args ...string) row {
		b.Helper()
		start := time.Now()
		out := walrusOut(b, env, append([]string{"backup-push", c.DataDir()}, args...)...)
		took := time.Since(start)
		name := strings.TrimSpace(out)
		var doc struct {
			Backups []struct {
				Name       string `json:"name"`
				StoredSize int64  `json:"stored_size"`
			} `json:"backups"`
		}
		if err := json.Unmarshal([]byte(walrusOut(b, env, "backup-list", "--json")), &doc); err != nil {
			b.Fatal(err)
		}
		for _, bk := range doc.Backups {
			if bk.Name == name {
				return row{what, name, took, bk.StoredSize}
			}
		}
		b.Fatalf("backup %s is not listed", name)
		return row{}
	}
	// One row on every page whose number is a multiple of every.
	touch := func(every int) {
		c.Exec(b, fmt.Sprintf(`UPDATE pgbench_accounts SET abalance = abalance + 1
WHERE (ctid::text::point)[0]::int %% %d = 0 AND (ctid::text::point)[1] = 1`, every))
	}

	b.ResetTimer()
	var rows []row
	for range b.N {
		full := push("full", "--full")
		touch(100)
		d1 := push("delta, 1% of pages", "--delta-from", full.name)
		touch(10) // a superset of the pages touched before
		d10 := push("delta, 10% of pages", "--delta-from", full.name)
		rows = []row{full, d1, d10}
	}
	b.StopTimer()
	fmt.Printf("\npgbench scale %d, pgbench_accounts %d pages; walrus lz4, filesystem repository\n", scale, pages)
	fmt.Printf("(each updated row also adds an entry to pgbench_accounts_pkey, whose changed pages count too)\n")
	fmt.Printf("%-26s %10s %12s %9s\n", "backup", "time", "stored", "vs full")
	for _, r := range rows {
		fmt.Printf("%-26s %10s %12s %8.1f%%\n", r.what, r.took.Round(10*time.Millisecond), mib(r.stored), 100*float64(r.stored)/float64(rows[0].stored))
	}
	b.ReportMetric(rows[0].took.Seconds(), "full-s")
	b.ReportMetric(rows[1].took.Seconds(), "delta1%-s")
	b.ReportMetric(rows[2].took.Seconds(), "delta10%-s")
	b.ReportMetric(100*float64(rows[1].stored)/float64(rows[0].stored), "delta1%-size-%")
	b.ReportMetric(100*float64(rows[2].stored)/float64(rows[0].stored), "delta10%-size-%")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// walrusOut runs walrus with env and returns its stdout; it fails the
// benchmark unless walrus exits 0.
func walrusOut(b *testing.B, env []string, args ...string) string {
	b.Helper()
	cmd := exec.Command(testbin.Walrus(b), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("walrus %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
