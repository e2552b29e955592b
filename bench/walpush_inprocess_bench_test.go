package bench

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/walpush"
)

// BenchmarkWALPushInProcess pushes WALRUS_BENCH_SEGMENTS (default 100)
// real segments with walpush.Push, one after another, in the test process
// into a filesystem repository (lz4, no encryption), so that -cpuprofile
// shows what one push costs beyond compression. WALRUS_BENCH_WAL_DIR
// reuses kept segments. For example:
//
//	WALRUS_BENCH_WAL_DIR=/var/tmp/walbench go test -run '^$' \
//	    -bench WALPushInProcess -benchtime 1x -cpuprofile /tmp/push.out ./bench/
func BenchmarkWALPushInProcess(b *testing.B) {
	n := walEnvInt("WALRUS_BENCH_SEGMENTS", 100)
	w := makeWAL(b, n)
	codec, err := compress.ByName("lz4")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		st, err := fs.New(filepath.Join(b.TempDir(), "repo"))
		if err != nil {
			b.Fatal(err)
		}
		opts := walpush.Options{Store: st, Encoder: &repo.Encoder{Codec: codec}, PGData: w.pgdata, Repository: "bench"}
		b.StartTimer()
		for _, s := range w.segs {
			if _, err := walpush.Push(ctx, filepath.Join(w.pgdata, "pg_wal", s), opts); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "segments/s")
}
