package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/basebackup"
	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/repo"
)

// BenchmarkBackupInProcess runs a full backup-push and a backup-fetch,
// then a delta after updates touching 10% of the pages of
// pgbench_accounts and its restore, in the test process itself (basebackup.Push and Fetch, configured from the
// same WALRUS_* settings as the command), so that go test's -cpuprofile
// and -memprofile see them. Repository: WALRUS_BENCH_REPO=fs (default) or
// s3; codec WALRUS_BENCH_CODECS' first (lz4); scale WALRUS_BENCH_SCALE.
// WALRUS_BENCH_TRACE=1 prints the phases of each push with their times.
// For example:
//
//	WALRUS_BENCH_SCALE=20 go test -run '^$' -bench BackupInProcess -benchtime 1x \
//	    -cpuprofile /tmp/cpu.out ./bench/ && go tool pprof -top /tmp/cpu.out
func BenchmarkBackupInProcess(b *testing.B) {
	scale := settingInt("WALRUS_BENCH_SCALE", 100)
	codec := settingList("WALRUS_BENCH_CODECS", "lz4,zstd")[0]
	d := newBenchDB(b, scale)
	t := fsTarget(b)
	if settingList("WALRUS_BENCH_REPO", "fs")[0] == "s3" {
		t = s3Target(b, s3test.Start(b, s3test.KeepAlive()), "s3")
	}
	d.archiveTo(b, t.archiveScript(d.walrus))
	env := map[string]string{"WALRUS_COMPRESSION": codec, "WALRUS_POSTGRES_DSN": d.c.DSN()}
	for _, kv := range t.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
		if strings.HasPrefix(k, "AWS_") {
			b.Setenv(k, v) // the SDK reads these itself
		}
	}
	cfg, err := config.Load("", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r, err := repo.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	push := func(what string, deltaFrom string) basebackup.Result {
		start := time.Now()
		logf := func(format string, args ...any) {
			if os.Getenv("WALRUS_BENCH_TRACE") != "" {
				fmt.Printf("#   %7.3fs %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
			}
		}
		res, err := basebackup.Push(ctx, basebackup.Options{
			Store: r.Store, Encoder: r.Encoder, Decoder: r.Decoder, PGData: d.c.DataDir(), DSN: cfg.Postgres.DSN,
			PartSize: cfg.PartSize, Concurrency: cfg.UploadConcurrency, Full: deltaFrom == "", DeltaFrom: deltaFrom,
			Logf: logf,
		})
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		fmt.Printf("# in process, %s, %s: push %s %s (%.0f MB/s of %s)\n", t.name, codec, what, took.Round(time.Millisecond), float64(res.DataSize)/1e6/took.Seconds(), mb(res.DataSize))
		return res
	}
	fetch := func(what string, res basebackup.Result) {
		start := time.Now()
		dest := filepath.Join(restoreDir(b), "restored")
		if _, err := basebackup.Fetch(ctx, basebackup.FetchOptions{
			Store: r.Store, Decoder: r.Decoder, Backup: res.Name, Dest: dest,
			Concurrency: cfg.DownloadConcurrency, Recovery: basebackup.Recovery{RestoreCommand: "false", Target: basebackup.RecoveryTarget{Immediate: true}},
		}); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		fmt.Printf("# in process, %s, %s: fetch %s %s (%.0f MB/s of %s)\n", t.name, codec, what, took.Round(time.Millisecond), float64(res.DataSize)/1e6/took.Seconds(), mb(res.DataSize))
		b.StopTimer()
		removeRestore(b, dest)
		b.StartTimer()
	}
	// Each operation carries a profile label: go tool pprof
	// -tagfocus=op=fetch-full shows the full restore alone.
	labelled := func(op string, fn func()) {
		pprof.Do(ctx, pprof.Labels("op", op), func(context.Context) { fn() })
	}
	b.ResetTimer()
	var full, delta basebackup.Result
	labelled("push-full", func() { full = push("full", "") })
	labelled("fetch-full", func() { fetch("full", full) })
	b.StopTimer()
	d.touch(b, 10)
	b.StartTimer()
	labelled("push-delta", func() { delta = push("delta 10%", full.Name) })
	labelled("fetch-delta", func() { fetch("delta 10%", delta) })
	b.StopTimer()
}
