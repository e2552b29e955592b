package s3

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"golang.org/x/sync/errgroup"

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
