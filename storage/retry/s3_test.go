package retry_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walrusdb/walrus/internal/faultproxy"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/retry"
	"github.com/walrusdb/walrus/storage/s3"
	"github.com/walrusdb/walrus/storage/storagetest"
)

// s3Store returns a retrying S3 store on a fresh bucket of srv, reached
// through the proxy p.
func s3Store(t *testing.T, srv *s3test.Server, p *faultproxy.Proxy, opts retry.Options) *retry.Store {
	t.Helper()
	st, err := s3.New(t.Context(), s3.Config{
		Bucket:          srv.NewBucket(t),
		Prefix:          "repo",
		Endpoint:        p.URL(),
		Region:          srv.Region,
		ForcePathStyle:  true,
		AccessKeyID:     srv.AccessKey,
		SecretAccessKey: srv.SecretKey,
		PartSize:        s3.MinPartSize,
		Concurrency:     2,
	})
	if err != nil {
		t.Fatal(err)
	}
	rs := retry.New(st, opts)
	t.Cleanup(func() { rs.Close() })
	return rs
}

// TestS3ConformanceUnderTransientFaults runs the storage suite against the
// real S3 server through a proxy that breaks about one request in ten:
// 503 SlowDown, resets while the request arrives, resets and truncations
// mid-response, lost responses, delays.
func TestS3ConformanceUnderTransientFaults(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	p := faultproxy.Start(t, srv.Endpoint, faultproxy.Options{Seed: 42, Rate: 0.1, MaxInARow: 2})
	var retries atomic.Int64
	t.Cleanup(func() {
		t.Logf("%d requests, %d faults injected, %d retries by the retry layer", p.Requests(), p.Faults(), retries.Load())
		if p.Faults() == 0 {
			t.Error("the proxy injected no fault")
		}
		for _, k := range faultproxy.Transient {
			if p.FaultsOf(k) == 0 {
				t.Errorf("no fault of kind %s was injected", k)
			}
		}
	})
	storagetest.Run(t, func(t *testing.T) storage.Store {
		opts := fast
		opts.OnRetry = func(err error, attempt int, d time.Duration) { t.Logf("retry %d: %v", attempt, err) }
		st := s3Store(t, srv, p, opts)
		t.Cleanup(func() { retries.Add(st.Retries()) })
		return st
	})
}

// TestS3PermanentFaultFailsFast: with every request denied, a Put fails at
// its first request, with an error that names the key.
func TestS3PermanentFaultFailsFast(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	var deny atomic.Bool
	p := faultproxy.Start(t, srv.Endpoint, faultproxy.Options{
		Rate: 1, Kinds: []faultproxy.Kind{faultproxy.ErrorResponse}, Status: http.StatusForbidden, Code: "AccessDenied",
		Match: func(*http.Request) bool { return deny.Load() },
	})
	st := s3Store(t, srv, p, fast)
	deny.Store(true)
	before := p.Requests()
	err := st.Put(t.Context(), "wal/000000010000000000000001.lz4", bytes.NewReader(make([]byte, 1000)), storage.PutOptions{Size: 1000})
	if err == nil {
		t.Fatal("Put succeeded through a proxy that denies everything")
	}
	if !strings.Contains(err.Error(), "wal/000000010000000000000001.lz4") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("error %q should name the key and the server's refusal", err)
	}
	if n := p.Requests() - before; n != 1 {
		t.Errorf("a denied Put made %d requests, want 1 (no retries)", n)
	}
	if retry.IsRetryable(err) {
		t.Errorf("IsRetryable(%v) = true for 403 AccessDenied", err)
	}
}
