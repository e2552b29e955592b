package compress

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
)

// benchData is 16 MiB of WAL-like data, made once.
var benchData = sync.OnceValue(func() []byte { return walLikeData(16<<20, 99) })

// BenchmarkCompress compresses a 16 MiB WAL-like segment with each codec at
// its default level; the ratio metric is input size over output size.
func BenchmarkCompress(b *testing.B) {
	data := benchData()
	for _, c := range allCodecs(b) {
		b.Run(c.Name(), func(b *testing.B) {
			benchCompress(b, c, data, 0)
		})
	}
}

// BenchmarkDecompress decompresses what BenchmarkCompress makes; MB/s counts
// decompressed bytes.
func BenchmarkDecompress(b *testing.B) {
	data := benchData()
	for _, c := range allCodecs(b) {
		z := compressed(b, c, data)
		b.Run(c.Name(), func(b *testing.B) {
			benchDecompress(b, c, z, len(data))
		})
	}
}

// BenchmarkCompressLevel compares levels around each default, to back the
// choice of defaults.
func BenchmarkCompressLevel(b *testing.B) {
	data := benchData()
	for _, cl := range []struct {
		codec  string
		levels []int
	}{
		{"lz4", []int{1, 3}},
		{"zstd", []int{1, 3, 7, 11}},
		{"brotli", []int{1, 2, 3, 4, 5, 6}},
		{"lzma", []int{1, 3, 6}},
	} {
		c, _ := ByName(cl.codec)
		for _, level := range cl.levels {
			b.Run(fmt.Sprintf("%s/%d", cl.codec, level), func(b *testing.B) {
				benchCompress(b, c, data, level)
			})
		}
	}
}

// BenchmarkCompressParallel compresses segments on every CPU at once, as
// wal-push and backup-push do; pooled encoders show here.
func BenchmarkCompressParallel(b *testing.B) {
	data := benchData()[:4<<20]
	for _, c := range allCodecs(b) {
		b.Run(c.Name(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w, err := c.NewWriter(io.Discard, 0)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := w.Write(data); err != nil {
						b.Error(err)
						return
					}
					if err := w.Close(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchCompress compresses data with c at level once per iteration.
func benchCompress(b *testing.B, c Codec, data []byte, level int) {
	var out countWriter
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		out = 0
		w, err := c.NewWriter(&out, level)
		if err != nil {
			b.Fatal(err)
		}
		// Writes of 32 KiB, as io.Copy from a file makes.
		for p := data; len(p) > 0; p = p[min(len(p), 32<<10):] {
			if _, err := w.Write(p[:min(len(p), 32<<10)]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data))/float64(out), "ratio")
}

// benchDecompress decompresses z (size bytes of plaintext) once per iteration.
func benchDecompress(b *testing.B, c Codec, z []byte, size int) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	buf := make([]byte, 32<<10)
	for b.Loop() {
		r, err := c.NewReader(bytes.NewReader(z))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, r, buf)
		if err != nil || n != int64(size) {
			b.Fatalf("decompressed %d bytes, %v", n, err)
		}
		r.Close()
	}
}

// countWriter counts and discards what is written.
type countWriter int64

// Write counts p.
func (w *countWriter) Write(p []byte) (int, error) {
	*w += countWriter(len(p))
	return len(p), nil
}
