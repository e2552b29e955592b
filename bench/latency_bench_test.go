package bench

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/faultproxy"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/internal/testbin"
)

// BenchmarkWALPushLatency archives WALRUS_BENCH_SEGMENTS (default 100;
// 20 is plenty) real segments one wal-push per segment, concurrency 1 (no
// backlog: each call pushes only its own segment), to S3 through a proxy
// that delays every request by WALRUS_BENCH_RTT (default 10ms), as a
// distant S3 endpoint does. It prints segments/s and the requests each
// push made: what archive_command's latency is made of when the
// repository is far away.
//
//	WALRUS_BENCH_WAL_DIR=/var/tmp/walbench WALRUS_BENCH_SEGMENTS=20 \
//	    go test -run '^$' -bench WALPushLatency -benchtime 1x ./bench/
func BenchmarkWALPushLatency(b *testing.B) {
	n := walEnvInt("WALRUS_BENCH_SEGMENTS", 100)
	rtt := 10 * time.Millisecond
	if v := os.Getenv("WALRUS_BENCH_RTT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("WALRUS_BENCH_RTT: %v", err)
		}
		rtt = d
	}
	testbin.Walrus(b)
	w := makeWAL(b, n)
	srv := s3test.Start(b, s3test.KeepAlive())
	proxy := faultproxy.Start(b, srv.Endpoint, faultproxy.Options{Seed: 1, Rate: 1, Kinds: []faultproxy.Kind{faultproxy.Delay}, Delay: rtt})
	for range b.N {
		env := append(srv.Env(srv.NewBucket(b)), "WALRUS_S3_ENDPOINT="+proxy.URL(), "WALRUS_WAL_PUSH_CONCURRENCY=1")
		before := proxy.FaultsOf(faultproxy.Delay)
		r := archiveRun(b, w, env, "")
		requests := proxy.FaultsOf(faultproxy.Delay) - before
		fmt.Printf("wal-push, S3 %v away, one segment per call: %.1f segments/s, %.1f ms per call, %.1f requests per call\n",
			rtt, float64(n)/r.wall.Seconds(), float64(r.wall.Milliseconds())/float64(n), float64(requests)/float64(n))
		b.ReportMetric(float64(n)/r.wall.Seconds(), "segments/s")
		b.ReportMetric(float64(requests)/float64(n), "requests/call")
	}
}
