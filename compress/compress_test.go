package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// checksummed reports whether a codec detects damage to its data by itself.
// lz4 does not quite: its frames carry block checksums but no content
// checksum, so a flipped "stored uncompressed" bit in a block's size word
// yields wrong data. Every caller checksums the plaintext (a backup file's
// CRC-32C, a WAL object's digest) and a manifest binds each part's stored
// bytes with SHA-256; catalog's TestVerifyFlippedByte flips every byte of
// lz4 parts and sees each one caught.
func checksummed(name string) bool {
	return name == "zstd" || name == "lzma"
}

// allCodecs returns every codec.
func allCodecs(t testing.TB) []Codec {
	t.Helper()
	var cs []Codec
	for _, n := range Names() {
		c, err := ByName(n)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

// closeCounter is a destination that counts Close calls (it must get none).
type closeCounter struct {
	bytes.Buffer
	closes int
}

// Close counts the call.
func (c *closeCounter) Close() error { c.closes++; return nil }

// compressChunks compresses data with c at level, writing it in chunks of
// the given size (0: one Write).
func compressChunks(t testing.TB, c Codec, data []byte, level, chunk int) []byte {
	t.Helper()
	var dst closeCounter
	w, err := c.NewWriter(&dst, level)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	if chunk <= 0 {
		chunk = max(len(data), 1)
	}
	for p := data; len(p) > 0; {
		n := min(chunk, len(p))
		if k, err := w.Write(p[:n]); err != nil || k != n {
			t.Fatalf("Write: %d, %v", k, err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if dst.closes != 0 {
		t.Fatalf("writer Close closed the destination")
	}
	return dst.Bytes()
}

// compressed compresses data at the default level in one Write.
func compressed(t testing.TB, c Codec, data []byte) []byte {
	t.Helper()
	return compressChunks(t, c, data, 0, 0)
}

// readAllBy reads r to the end with reads of exactly size bytes.
func readAllBy(r io.Reader, size int) ([]byte, error) {
	var out []byte
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// decompress decodes src with c, reading size bytes at a time.
func decompress(c Codec, src io.Reader, size int) ([]byte, error) {
	r, err := c.NewReader(src)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readAllBy(r, size)
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	want := map[string]string{"lz4": "lz4", "zstd": "zst", "brotli": "br", "lzma": "xz", "none": "none"}
	names := Names()
	if names[0] != DefaultName {
		t.Errorf("Names()[0] = %q, want DefaultName %q", names[0], DefaultName)
	}
	if len(names) != len(want) {
		t.Errorf("Names() = %v, want the %d codecs", names, len(want))
	}
	names[0] = "mutated"
	if Names()[0] != DefaultName {
		t.Error("Names returns a shared slice")
	}
	for name, ext := range want {
		c, err := ByName(name)
		if err != nil {
			t.Fatalf("ByName(%q): %v", name, err)
		}
		if c.Name() != name || c.Ext() != ext {
			t.Errorf("ByName(%q) = %s/%s, want %s/%s", name, c.Name(), c.Ext(), name, ext)
		}
		c2, err := ByExt(ext)
		if err != nil {
			t.Fatalf("ByExt(%q): %v", ext, err)
		}
		if c2.Name() != name {
			t.Errorf("ByExt(%q).Name() = %q, want %q", ext, c2.Name(), name)
		}
	}
	for _, bad := range []string{"", "LZ4", "gzip", "zst", "xz", " lz4"} {
		_, err := ByName(bad)
		if err == nil {
			t.Errorf("ByName(%q) succeeded", bad)
			continue
		}
		for _, n := range Names() {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("ByName(%q) error %q does not list %q", bad, err, n)
			}
		}
	}
	for _, bad := range []string{"", "gz", "zstd", ".lz4", "lzma"} {
		if _, err := ByExt(bad); err == nil {
			t.Errorf("ByExt(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), "zst") {
			t.Errorf("ByExt(%q) error %q does not list the extensions", bad, err)
		}
	}
}

func TestValidateLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		level int
		ok    bool
	}{
		{"lz4", 0, true}, {"lz4", 1, true}, {"lz4", 9, true}, {"lz4", 10, false}, {"lz4", -1, false},
		{"zstd", 0, true}, {"zstd", 1, true}, {"zstd", 3, true}, {"zstd", 19, true}, {"zstd", 22, true},
		{"zstd", 23, false}, {"zstd", -5, false},
		{"brotli", 0, true}, {"brotli", 1, true}, {"brotli", 11, true}, {"brotli", 12, false},
		{"lzma", 0, true}, {"lzma", 1, true}, {"lzma", 9, true}, {"lzma", 10, false},
		{"none", 0, true}, {"none", 1, false},
		{"gzip", 0, false},
	}
	for _, tt := range tests {
		err := ValidateLevel(tt.name, tt.level)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateLevel(%q, %d) = %v, want ok=%v", tt.name, tt.level, err, tt.ok)
		}
		if err != nil && tt.name != "gzip" && tt.name != "none" && !strings.Contains(err.Error(), "..") {
			t.Errorf("ValidateLevel(%q, %d) error %q does not name the range", tt.name, tt.level, err)
		}
		c, cerr := ByName(tt.name)
		if cerr != nil {
			continue
		}
		w, werr := c.NewWriter(io.Discard, tt.level)
		if (werr == nil) != tt.ok {
			t.Errorf("%s.NewWriter(level %d) = %v, want ok=%v", tt.name, tt.level, werr, tt.ok)
		}
		if werr == nil {
			if err := w.Close(); err != nil {
				t.Errorf("%s level %d: Close: %v", tt.name, tt.level, err)
			}
		}
	}
}

// TestLevels round-trips data at every level of every codec.
func TestLevels(t *testing.T) {
	t.Parallel()
	data := mixedData(200_000, 7)
	for _, c := range allCodecs(t) {
		r := c.(leveled).levels()
		for level := 0; level <= r.max; level++ {
			if level > 0 && level < r.min {
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", c.Name(), level), func(t *testing.T) {
				t.Parallel()
				z := compressChunks(t, c, data, level, 0)
				got, err := decompress(c, bytes.NewReader(z), 32<<10)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("round trip mismatch")
				}
				t.Logf("%d -> %d bytes", len(data), len(z))
			})
		}
	}
}

// readPattern is one way of reading a decompressed stream.
type readPattern struct {
	name    string
	maxSize int                       // skip for inputs larger than this (0: no limit)
	src     func(io.Reader) io.Reader // wraps the compressed source
	read    func(io.Reader) ([]byte, error)
}

var readPatterns = []readPattern{
	{name: "read1", maxSize: 1<<20 + 1, src: ident, read: func(r io.Reader) ([]byte, error) {
		return io.ReadAll(iotest.OneByteReader(r))
	}},
	{name: "read7", src: ident, read: func(r io.Reader) ([]byte, error) { return readAllBy(r, 7) }},
	{name: "read4096", src: ident, read: func(r io.Reader) ([]byte, error) { return readAllBy(r, 4096) }},
	{name: "readLarge", src: ident, read: func(r io.Reader) ([]byte, error) { return readAllBy(r, 4<<20) }},
	{name: "readAll", maxSize: 1<<20 + 1, src: ident, read: io.ReadAll},
	{name: "srcOneByte", maxSize: 1<<20 + 1, src: iotest.OneByteReader, read: func(r io.Reader) ([]byte, error) {
		return readAllBy(r, 4096)
	}},
	{name: "srcHalf", src: iotest.HalfReader, read: func(r io.Reader) ([]byte, error) { return readAllBy(r, 1000) }},
	{name: "srcDataErr", maxSize: 1<<20 + 1, src: iotest.DataErrReader, read: func(r io.Reader) ([]byte, error) { return readAllBy(r, 8192) }},
}

// ident returns r.
func ident(r io.Reader) io.Reader { return r }

// roundTripInputs are the inputs of TestRoundTrip.
func roundTripInputs() []struct {
	name string
	data []byte
} {
	return []struct {
		name string
		data []byte
	}{
		{"0", nil},
		{"1", []byte{'x'}},
		{"8191", mixedData(8191, 1)},
		{"8192", mixedData(8192, 2)},
		{"8193", mixedData(8193, 3)},
		{"1MiB+1", mixedData(1<<20+1, 4)},
		{"random64KiB", randomData(64 << 10)},
		{"zeros1MiB", make([]byte, 1<<20)},
		{"wal16MiB", walLikeData(16<<20, 5)},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, in := range roundTripInputs() {
		for _, c := range allCodecs(t) {
			t.Run(c.Name()+"/"+in.name, func(t *testing.T) {
				t.Parallel()
				if testing.Short() && len(in.data) > 1<<20+1 {
					t.Skip("large input in -short mode")
				}
				z := compressed(t, c, in.data)
				// Written in odd chunks, the stream must decode the same.
				if len(in.data) <= 1<<20+1 {
					chunk := 7
					if len(in.data) > 1<<16 {
						chunk = 4093
					}
					z2 := compressChunks(t, c, in.data, 0, chunk)
					if got, err := decompress(c, bytes.NewReader(z2), 32<<10); err != nil || !bytes.Equal(got, in.data) {
						t.Fatalf("written in chunks of %d: err=%v, equal=%v", chunk, err, bytes.Equal(got, in.data))
					}
				}
				if len(in.data) > 1<<16 {
					t.Logf("%d -> %d bytes (%.2fx)", len(in.data), len(z), float64(len(in.data))/float64(len(z)))
				}
				for _, p := range readPatterns {
					if p.maxSize > 0 && len(in.data) > p.maxSize {
						continue
					}
					src := &closeCounter{}
					src.Write(z)
					r, err := c.NewReader(p.src(src))
					if err != nil {
						t.Fatalf("%s: NewReader: %v", p.name, err)
					}
					got, err := p.read(r)
					if err != nil {
						t.Fatalf("%s: read: %v", p.name, err)
					}
					if !bytes.Equal(got, in.data) {
						t.Fatalf("%s: got %d bytes, want %d (or different content)", p.name, len(got), len(in.data))
					}
					// io.EOF is sticky.
					if n, err := r.Read(make([]byte, 10)); n != 0 || err != io.EOF {
						t.Fatalf("%s: Read after end = %d, %v; want 0, EOF", p.name, n, err)
					}
					if err := r.Close(); err != nil {
						t.Fatalf("%s: Close: %v", p.name, err)
					}
					if src.closes != 0 {
						t.Fatalf("%s: reader Close closed the source", p.name)
					}
				}
			})
		}
	}
}

// cutPoints returns the lengths to truncate a stream of n bytes to: all of
// them for short streams, else the first and last edge ones and some
// spread in between.
func cutPoints(n int) []int {
	if n <= 2048 {
		cuts := make([]int, n)
		for i := range cuts {
			cuts[i] = i
		}
		return cuts
	}
	edge, middle := 100, 200
	if n > 64<<10 {
		edge, middle = 24, 40 // each cut decodes up to a MiB
	}
	var cuts []int
	for i := range edge {
		cuts = append(cuts, i, n-1-i)
	}
	for i := 1; i <= middle; i++ {
		cuts = append(cuts, i*n/(middle+1))
	}
	slices.Sort(cuts)
	return slices.Compact(cuts)
}

func TestTruncated(t *testing.T) {
	t.Parallel()
	inputs := map[string][]byte{
		"0":      nil,
		"1":      {0},
		"8193":   mixedData(8193, 11),
		"1MiB+1": mixedData(1<<20+1, 12),
	}
	for _, c := range allCodecs(t) {
		for name, data := range inputs {
			t.Run(c.Name()+"/"+name, func(t *testing.T) {
				t.Parallel()
				z := compressed(t, c, data)
				for _, cut := range cutPoints(len(z)) {
					got, err := decompress(c, bytes.NewReader(z[:cut]), 4096)
					if c.Name() == "none" {
						// Undetectable: "none" relies on the caller's checksum.
						if err != nil || !bytes.Equal(got, data[:cut]) {
							t.Fatalf("cut at %d: %v", cut, err)
						}
						continue
					}
					if err == nil {
						t.Fatalf("stream of %d bytes cut at %d: no error, %d of %d bytes", len(z), cut, len(got), len(data))
					}
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Errorf("cut at %d: error %q does not wrap io.ErrUnexpectedEOF", cut, err)
					}
					if !strings.HasPrefix(err.Error(), "decompress "+c.Name()+": ") {
						t.Errorf("error %q lacks the codec prefix", err)
					}
				}
			})
		}
	}
}

// lz4BlockEnds returns the offsets in an lz4 frame (as this package writes
// it: no content size, block and content checksums) where each block ends.
func lz4BlockEnds(t *testing.T, z []byte) []int {
	t.Helper()
	off := 7 // magic, flags, block descriptor, header checksum
	var ends []int
	for {
		size := binary.LittleEndian.Uint32(z[off:])
		if size == 0 {
			return ends
		}
		off += 4 + int(size&0x7fffffff) + 4
		ends = append(ends, off)
	}
}

// zstdBlockEnds returns the offsets in a zstd frame where each block ends.
func zstdBlockEnds(t *testing.T, z []byte) []int {
	t.Helper()
	fhd := z[4]
	off := 5
	single := fhd&0x20 != 0
	if !single {
		off++ // window descriptor
	}
	off += [4]int{0, 1, 2, 4}[fhd&3] // dictionary ID
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	off += fcs
	var ends []int
	for {
		h := uint32(z[off]) | uint32(z[off+1])<<8 | uint32(z[off+2])<<16
		last, typ, size := h&1 != 0, (h>>1)&3, int(h>>3)
		if typ == 1 { // RLE: one byte
			size = 1
		}
		off += 3 + size
		ends = append(ends, off)
		if last {
			return ends
		}
	}
}

// TestTruncatedAtBlockBoundary cuts streams exactly where a block ends,
// where a lax decoder could take the cut for the end of the stream.
func TestTruncatedAtBlockBoundary(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		codec string
		size  int // enough for a few blocks
		ends  func(*testing.T, []byte) []int
	}{{"lz4", 4 << 20, lz4BlockEnds}, {"zstd", 1 << 20, zstdBlockEnds}} {
		t.Run(tt.codec, func(t *testing.T) {
			t.Parallel()
			c, _ := ByName(tt.codec)
			z := compressed(t, c, walLikeData(tt.size, 21))
			ends := tt.ends(t, z)
			if len(ends) < 3 {
				t.Fatalf("only %d blocks", len(ends))
			}
			for _, end := range ends {
				for _, cut := range []int{end - 1, end, end + 1} {
					if cut >= len(z) {
						continue
					}
					if _, err := decompress(c, bytes.NewReader(z[:cut]), 64<<10); err == nil {
						t.Fatalf("cut at %d (block end %d of %d): no error", cut, end, len(z))
					}
				}
			}
		})
	}
}

// flipPoints returns the offsets at which to damage a stream of n bytes.
func flipPoints(n int) []int {
	if n <= 1024 {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		return p
	}
	return cutPoints(n)
}

func TestCorrupt(t *testing.T) {
	t.Parallel()
	inputs := map[string][]byte{
		"1":      {'a'},
		"8193":   mixedData(8193, 31),
		"1MiB+1": mixedData(1<<20+1, 32),
	}
	for _, c := range allCodecs(t) {
		for name, data := range inputs {
			t.Run(c.Name()+"/"+name, func(t *testing.T) {
				t.Parallel()
				z := compressed(t, c, data)
				var silent, errs int
				allMasks := []byte{0x01, 0x80, 0xff}
				for i, pos := range flipPoints(len(z)) {
					masks := allMasks
					if len(z) > 64<<10 {
						masks = allMasks[i%3 : i%3+1] // large streams: one flip per position
					}
					for _, mask := range masks {
						bad := bytes.Clone(z)
						bad[pos] ^= mask
						got, err := decompress(c, bytes.NewReader(bad), 4096)
						switch {
						case err != nil:
							errs++
						case bytes.Equal(got, data):
							// Harmless: e.g. a larger window size in a header.
						case checksummed(c.Name()):
							t.Fatalf("byte %d of %d ^%#x: wrong data without an error", pos, len(z), mask)
						default:
							silent++
						}
					}
				}
				t.Logf("%d damaged streams detected, %d decoded to wrong data without error", errs, silent)
				if checksummed(c.Name()) && errs == 0 {
					t.Fatal("no damage detected")
				}
			})
		}
	}
}

func TestTrailingData(t *testing.T) {
	t.Parallel()
	for _, c := range allCodecs(t) {
		if c.Name() == "none" {
			continue
		}
		for _, tail := range [][]byte{{0}, {0, 0, 0, 0}, []byte("garbage after the stream")} {
			z := append(compressed(t, c, mixedData(5000, 41)), tail...)
			if _, err := decompress(c, bytes.NewReader(z), 4096); err == nil {
				t.Errorf("%s: %d trailing bytes accepted", c.Name(), len(tail))
			}
		}
	}
}

func TestEmptyInput(t *testing.T) {
	t.Parallel()
	for _, c := range allCodecs(t) {
		got, err := decompress(c, bytes.NewReader(nil), 100)
		if c.Name() == "none" {
			if err != nil || len(got) != 0 {
				t.Errorf("none: empty input: %q, %v", got, err)
			}
			continue
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: empty input: %v, want io.ErrUnexpectedEOF", c.Name(), err)
		}
	}
}

// TestSourceError checks that a failing source is reported as itself, not
// as damaged data.
func TestSourceError(t *testing.T) {
	t.Parallel()
	errNet := errors.New("connection reset")
	data := mixedData(300_000, 51)
	for _, c := range allCodecs(t) {
		z := compressed(t, c, data)
		for _, at := range []int{0, 1, len(z) / 2, len(z) - 1} {
			src := io.MultiReader(bytes.NewReader(z[:at]), iotest.ErrReader(errNet))
			_, err := decompress(c, src, 4096)
			if !errors.Is(err, errNet) {
				t.Errorf("%s: source fails after %d bytes: got %v, want it wrapped", c.Name(), at, err)
			}
		}
	}
}

// failWriter accepts n bytes, then fails.
type failWriter struct {
	n   int
	err error
}

// Write accepts what is left of n, then fails.
func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, w.err
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	t.Parallel()
	errDisk := errors.New("disk full")
	data := mixedData(3<<20, 61)
	for _, c := range allCodecs(t) {
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			for _, limit := range []int{0, 5, 100_000} {
				w, err := c.NewWriter(&failWriter{n: limit, err: errDisk}, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, werr := w.Write(data)
				cerr := w.Close()
				if !errors.Is(werr, errDisk) && !errors.Is(cerr, errDisk) {
					t.Fatalf("limit %d: Write=%v Close=%v, want %v", limit, werr, cerr, errDisk)
				}
				if cerr == nil {
					t.Fatalf("limit %d: Close succeeded after a failed write", limit)
				}
				if again := w.Close(); again == nil || again.Error() != cerr.Error() {
					t.Fatalf("second Close = %v, want %v", again, cerr)
				}
			}
			// Write after Close.
			w, _ := c.NewWriter(io.Discard, 0)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write([]byte("late")); err == nil {
				t.Fatal("Write after Close succeeded")
			}
			if err := w.Close(); err != nil {
				t.Fatalf("second Close of a good stream: %v", err)
			}
		})
	}
}

func TestReaderCloseEarly(t *testing.T) {
	t.Parallel()
	data := mixedData(1<<20, 71)
	for _, c := range allCodecs(t) {
		z := compressed(t, c, data)
		r, err := c.NewReader(bytes.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("%s: Close: %v", c.Name(), err)
		}
		if _, err := r.Read(make([]byte, 10)); err == nil || err == io.EOF {
			t.Fatalf("%s: Read after Close = %v, want an error", c.Name(), err)
		}
		// Close without any Read.
		r, _ = c.NewReader(bytes.NewReader(z))
		if err := r.Close(); err != nil {
			t.Fatalf("%s: Close before Read: %v", c.Name(), err)
		}
	}
}

// TestConcurrentStreams runs many streams at once, as wal-push and backups
// do, sharing the pooled encoders and decoders (run with -race).
func TestConcurrentStreams(t *testing.T) {
	t.Parallel()
	for _, c := range allCodecs(t) {
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for i := range 16 {
				wg.Go(func() {
					data := mixedData(100_000+i*1000, uint64(i))
					var buf bytes.Buffer
					w, err := c.NewWriter(&buf, 0)
					if err != nil {
						errs <- err
						return
					}
					if _, err := w.Write(data); err != nil {
						errs <- err
						return
					}
					if err := w.Close(); err != nil {
						errs <- err
						return
					}
					got, err := decompress(c, &buf, 8192)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(got, data) {
						errs <- fmt.Errorf("stream %d: mismatch", i)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestPipe is the shape walrus uses: a compressor writing into a pipe whose
// other end a decompressor reads.
func TestPipe(t *testing.T) {
	t.Parallel()
	data := walLikeData(2<<20, 81)
	for _, c := range allCodecs(t) {
		pr, pw := io.Pipe()
		go func() {
			w, err := c.NewWriter(pw, 0)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			for p := data; len(p) > 0; p = p[min(len(p), 10000):] {
				if _, err := w.Write(p[:min(len(p), 10000)]); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			pw.CloseWithError(w.Close())
		}()
		got, err := decompress(c, pr, 32<<10)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: err=%v equal=%v", c.Name(), err, bytes.Equal(got, data))
		}
	}
}

// TestSplitNearEnd delivers a stream in three reads split near its end, as
// a network source may; every split must decode. (The brotli library alone
// fails some of these with "excessive input", e.g. when the last read holds
// only the last byte.)
func TestSplitNearEnd(t *testing.T) {
	t.Parallel()
	for _, c := range allCodecs(t) {
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			for _, n := range []int{0, 1, 30919} {
				data := mixedData(n, uint64(n))
				z := compressed(t, c, data)
				for a := max(0, len(z)-24); a < len(z); a++ {
					for b := a + 1; b < len(z); b++ {
						src := io.MultiReader(bytes.NewReader(z[:a]), bytes.NewReader(z[a:b]), bytes.NewReader(z[b:]))
						got, err := decompress(c, src, 4096)
						if err != nil || !bytes.Equal(got, data) {
							t.Fatalf("%d bytes, split at %d and %d of %d: err=%v, equal=%v", n, a, b, len(z), err, bytes.Equal(got, data))
						}
					}
				}
			}
		})
	}
}
