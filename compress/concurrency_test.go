package compress

import (
	"bytes"
	"errors"
	"testing"
)

// A codec WithConcurrency writes streams that the plain codec reads back
// exactly, whatever the sizes around its blocks and the write pattern.
func TestWithConcurrencyRoundTrip(t *testing.T) {
	t.Parallel()
	inputs := []struct {
		name string
		data []byte
	}{
		{"0", nil},
		{"1", []byte{'x'}},
		{"1MiB-1", mixedData(1<<20-1, 71)},
		{"1MiB", mixedData(1<<20, 72)},
		{"1MiB+1", mixedData(1<<20+1, 73)},
		{"wal5MiB", walLikeData(5<<20, 74)},
	}
	for _, name := range []string{"lz4", "zstd"} {
		base, _ := ByName(name)
		for _, n := range []int{2, 3} {
			c := WithConcurrency(base, n)
			if c.Name() != base.Name() || c.Ext() != base.Ext() {
				t.Fatalf("%s with concurrency %d is named %s (.%s)", name, n, c.Name(), c.Ext())
			}
			for _, in := range inputs {
				for _, chunk := range []int{0, 4093, 256 << 10} {
					if chunk == 4093 && len(in.data) > 1<<20+1 {
						continue
					}
					z := compressChunks(t, c, in.data, 0, chunk)
					got, err := decompress(base, bytes.NewReader(z), 32<<10)
					if err != nil || !bytes.Equal(got, in.data) {
						t.Fatalf("%s, concurrency %d, %s in chunks of %d: err=%v, %d bytes back of %d", name, n, in.name, chunk, err, len(got), len(in.data))
					}
				}
			}
			// An explicit level is validated and used.
			if _, err := c.NewWriter(&bytes.Buffer{}, 99); err == nil {
				t.Fatalf("%s with concurrency %d accepted level 99", name, n)
			}
			z := compressChunks(t, c, walLikeData(3<<20, 75), 1, 0)
			if got, err := decompress(base, bytes.NewReader(z), 1<<20); err != nil || len(got) != 3<<20 {
				t.Fatalf("%s level 1 with concurrency %d: %v", name, n, err)
			}
		}
	}
}

// Codecs that cannot work on several blocks, and a concurrency of 1, give
// the codec itself.
func TestWithConcurrencyUnchanged(t *testing.T) {
	t.Parallel()
	for _, c := range allCodecs(t) {
		if got := WithConcurrency(c, 1); got != c {
			t.Errorf("%s with concurrency 1 is %T, want the codec itself", c.Name(), got)
		}
		switch c.Name() {
		case "brotli", "lzma", "none":
			if got := WithConcurrency(c, 4); got != c {
				t.Errorf("%s with concurrency 4 is %T, want the codec itself", c.Name(), got)
			}
		}
	}
}

// A destination that fails makes Write or Close fail, Close again gives
// the same error, and nothing is written after Close.
func TestWithConcurrencyWriterErrors(t *testing.T) {
	t.Parallel()
	errDisk := errors.New("disk full")
	data := mixedData(6<<20, 76)
	for _, name := range []string{"lz4", "zstd"} {
		base, _ := ByName(name)
		c := WithConcurrency(base, 2)
		whole := len(compressChunks(t, c, data, 0, 0))
		for _, limit := range []int{0, 5, 100_000, whole / 2, whole - 1} {
			w, err := c.NewWriter(&failWriter{n: limit, err: errDisk}, 0)
			if err != nil {
				t.Fatal(err)
			}
			var werr error
			for p := data; len(p) > 0 && werr == nil; p = p[min(len(p), 64<<10):] {
				_, werr = w.Write(p[:min(len(p), 64<<10)])
			}
			cerr := w.Close()
			if !errors.Is(werr, errDisk) && !errors.Is(cerr, errDisk) {
				t.Fatalf("%s, limit %d: Write=%v Close=%v, want %v", name, limit, werr, cerr, errDisk)
			}
			if cerr == nil {
				t.Fatalf("%s, limit %d: Close succeeded after a failed write", name, limit)
			}
			if again := w.Close(); again == nil || again.Error() != cerr.Error() {
				t.Fatalf("%s: second Close = %v, want %v", name, again, cerr)
			}
		}
		w, _ := c.NewWriter(&bytes.Buffer{}, 0)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("late")); err == nil {
			t.Fatalf("%s: Write after Close succeeded", name)
		}
	}
}
