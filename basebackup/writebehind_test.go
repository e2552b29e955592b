package basebackup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/walrusdb/walrus/internal/progress"
)

// Pages written out of order and in runs through a wbWriterAt land where
// they belong, the file's last step runs after them, and every buffer
// comes back to the pool.
func TestWriteBehindPages(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "f")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const bs = 8192
	page := func(b int) []byte { return bytes.Repeat([]byte{byte(b + 1)}, bs) }
	order := []int{0, 1, 2, 7, 8, 3, 40, 41, 42, 43, 100}
	for i := 200; i < 260; i++ { // a run longer than one buffer
		order = append(order, i)
	}
	wb := newWriteBehind()
	file := newWBFile(out, true)
	t.Logf("direct I/O: %v", file.direct)
	dst := &wbWriterAt{ctx: context.Background(), w: wb, f: file, prog: progress.New(nil, "", "files")}
	for _, b := range order {
		if _, err := dst.WriteAt(page(b), int64(b)*bs); err != nil {
			t.Fatal(err)
		}
	}
	// A partial last page, padded when written directly, cut by truncate.
	if _, err := dst.WriteAt(page(260)[:100], 260*bs); err != nil {
		t.Fatal(err)
	}
	if err := dst.flush(); err != nil {
		t.Fatal(err)
	}
	closed := false
	wb.finish(file, func(err error) error {
		closed = true
		if err != nil {
			t.Errorf("finish got %v", err)
		}
		if err := file.truncate(); err != nil {
			t.Error(err)
		}
		return out.Close()
	})
	if err := wb.close(); err != nil {
		t.Fatal(err)
	}
	if !closed {
		t.Fatal("the file's last step did not run")
	}
	if len(wb.pool) != writeBehindBuffers {
		t.Fatalf("%d buffers back in the pool, want %d", len(wb.pool), writeBehindBuffers)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	written := map[int]bool{}
	for _, b := range order {
		written[b] = true
	}
	if len(got) != 260*bs+100 {
		t.Fatalf("file is %d bytes, want %d", len(got), 260*bs+100)
	}
	if !bytes.Equal(got[260*bs:], page(260)[:100]) {
		t.Fatal("the partial last page holds the wrong bytes")
	}
	for b := 0; b < 260; b++ {
		want := make([]byte, bs)
		if written[b] {
			want = page(b)
		}
		if !bytes.Equal(got[b*bs:(b+1)*bs], want) {
			t.Fatalf("block %d holds the wrong bytes", b)
		}
	}
}

// A write that fails is reported by close and by the next buffer request,
// later writes are dropped, and each file's last step still runs (with the
// error) so that it is closed.
func TestWriteBehindFailure(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(p) // writing to it fails
	if err != nil {
		t.Fatal(err)
	}
	wb := newWriteBehind()
	file := &wbFile{f: ro}
	ctx := context.Background()
	buf, err := wb.buffer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wb.write(file, 0, append(buf[:0], "data"...))
	var finishErr error
	wb.finish(file, func(err error) error {
		finishErr = err
		return ro.Close()
	})
	err = wb.close()
	if err == nil {
		t.Fatal("close reported no error after a failed write")
	}
	if finishErr == nil {
		t.Fatal("the file's last step did not get the error")
	}
	if _, berr := wb.buffer(ctx); berr == nil {
		t.Fatal("buffer succeeded after the writer failed")
	}
	if len(wb.pool) != writeBehindBuffers {
		t.Fatalf("%d buffers back in the pool, want %d", len(wb.pool), writeBehindBuffers)
	}
}
