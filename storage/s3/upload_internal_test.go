package s3

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/storage"
)

// Many Puts at once, each of several parts, share the Store's part
// buffers: all complete, each object whole, and no more buffers than the
// budget ever exist, however many Puts run.
func TestPutsShareBoundedBuffers(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	cfg := testConfig(srv, srv.NewBucket(t))
	cfg.Concurrency = 1
	st, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	const p = int(MinPartSize)
	sizes := []int{0, 1, p - 1, p, p + 1, 2 * p, 12 << 20, 12 << 20}
	var g errgroup.Group
	for i, n := range sizes {
		g.Go(func() error {
			data := randomData(byte(40+i), n)
			key := fmt.Sprintf("shared/%d", i)
			if err := st.Put(t.Context(), key, bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
				return fmt.Errorf("Put of %d bytes: %w", n, err)
			}
			rc, err := st.Get(t.Context(), key)
			if err != nil {
				return err
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, data) {
				return fmt.Errorf("%s holds %d bytes, want %d", key, len(got), n)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if budget := bufferBudget(cfg.Concurrency); st.buffers.made > budget {
		t.Fatalf("%d part buffers allocated, budget %d", st.buffers.made, budget)
	}
	if len(st.buffers.slots) != bufferBudget(cfg.Concurrency) {
		t.Fatalf("%d of %d buffers returned", len(st.buffers.slots), bufferBudget(cfg.Concurrency))
	}
}

// TestMemoryBodyNotCopied: a body already in memory that fits one part is
// sent as it is, without taking a part buffer (wal-push's objects); a
// larger one still goes up in parts.
func TestMemoryBodyNotCopied(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	st, err := New(t.Context(), testConfig(srv, srv.NewBucket(t)))
	if err != nil {
		t.Fatal(err)
	}
	small := randomData(3, 3<<20)
	if err := st.Put(t.Context(), "memory/small", io.NewSectionReader(bytes.NewReader(small), 0, int64(len(small))), storage.PutOptions{Size: int64(len(small))}); err != nil {
		t.Fatal(err)
	}
	if st.buffers.made != 0 {
		t.Fatalf("%d part buffers allocated for a body in memory", st.buffers.made)
	}
	if got := readAll(t, st, "memory/small"); !bytes.Equal(got, small) {
		t.Fatalf("stored %d bytes, want %d", len(got), len(small))
	}
	large := randomData(4, int(st.buffers.size)+1)
	if err := st.Put(t.Context(), "memory/large", bytes.NewReader(large), storage.PutOptions{Size: int64(len(large))}); err != nil {
		t.Fatal(err)
	}
	if st.buffers.made == 0 {
		t.Fatal("a body larger than a part did not go up in parts")
	}
	if got := readAll(t, st, "memory/large"); !bytes.Equal(got, large) {
		t.Fatalf("stored %d bytes, want %d", len(got), len(large))
	}
}

// onlyReader hides everything but Read: a body no layer can replay, as a
// backup part streamed through a pipe.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestPartRetriedPastSDKDefault: a part of a multipart upload that fails
// more often than the SDK's default of 3 attempts is still sent, from its
// buffer, while the body is a stream that cannot be read again; with
// fewer attempts allowed the upload fails and leaves nothing.
func TestPartRetriedPastSDKDefault(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	var mu sync.Mutex
	failures := 0
	ic := &interceptor{fn: func(req *http.Request) *http.Response {
		if req.Method != http.MethodPut || req.URL.Query().Get("partNumber") != "2" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if failures >= 4 {
			return nil
		}
		failures++
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
		return xmlError(http.StatusServiceUnavailable, "ServiceUnavailable")
	}}
	bucket := srv.NewBucket(t)
	st, err := newStore(t.Context(), testConfig(srv, bucket), func(o *awss3.Options) { o.HTTPClient = ic })
	if err != nil {
		t.Fatal(err)
	}
	noWait := retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
	st.partRetry = partRetryOption(DefaultPartAttempts, noWait)
	data := randomData(9, 12<<20)
	if err := st.Put(t.Context(), "parts/retried", onlyReader{bytes.NewReader(data)}, storage.PutOptions{Size: -1}); err != nil {
		t.Fatalf("Put with a part failing 4 times: %v", err)
	}
	if got := readAll(t, st, "parts/retried"); !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, want %d", len(got), len(data))
	}
	if failures != 4 {
		t.Fatalf("%d failures injected, want 4", failures)
	}

	// Three attempts (the SDK's default) are not enough.
	failures = 0
	st.partRetry = partRetryOption(3, noWait)
	if err := st.Put(t.Context(), "parts/failed", onlyReader{bytes.NewReader(data)}, storage.PutOptions{Size: -1}); err == nil {
		t.Fatal("Put with a part failing 4 times in 3 attempts succeeded")
	}
	if _, err := st.Stat(t.Context(), "parts/failed"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the failed upload left an object: %v", err)
	}
	assertNoUploads(t, srv, bucket)
}
