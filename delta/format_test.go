package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/pg"
)

// sampleFile returns a file of n pages, every third one at or past the
// threshold, and its selection.
func sampleFile(t *testing.T, bs, n int) ([]byte, Selection) {
	t.Helper()
	var data []byte
	for i := range n {
		lsn := threshold - pg.LSN(1000+i)
		if i%3 == 0 {
			lsn = threshold + pg.LSN(i)
		}
		data = append(data, makePage(bs, lsn, uint32(i), uint64(i))...)
	}
	sel, err := SelectPages(t.Context(), bytes.NewReader(data), int64(len(data)), SelectOptions{
		BlockSize: bs, Threshold: threshold, VerifyChecksums: true, RelFile: pg.RelFile{Path: "base/1/2"}})
	if err != nil {
		t.Fatal(err)
	}
	return data, sel
}

func TestIncrementRoundTrip(t *testing.T) {
	t.Parallel()
	for _, bs := range []int{1024, 8192, 32768} {
		for _, n := range []int{0, 1, 2, 3, 4, 100, 300} {
			data, sel := sampleFile(t, bs, n)
			want := (n + 2) / 3
			if len(sel.Blocks) != want {
				t.Fatalf("bs %d n %d: %d blocks selected, want %d", bs, n, len(sel.Blocks), want)
			}
			inc := encode(t, bytes.NewReader(data), sel, bs)
			if len(inc) != fixedHeaderSize+4*want+4+bs*want+4 {
				t.Fatalf("bs %d n %d: increment of %d bytes", bs, n, len(inc))
			}
			h, pages := decodeAll(t, inc)
			if h.BlockSize != bs || h.FileSize != int64(len(data)) || !slices.Equal(h.Blocks, sel.Blocks) {
				t.Fatalf("bs %d n %d: header %+v", bs, n, h)
			}
			for _, b := range sel.Blocks {
				if !bytes.Equal(pages[b], data[int(b)*bs:(int(b)+1)*bs]) {
					t.Fatalf("bs %d n %d: page %d differs", bs, n, b)
				}
			}
		}
	}
}

func TestIncrementNothingSelected(t *testing.T) {
	t.Parallel()
	// A file of 3 old pages: an increment with its size and no page.
	data := slices.Concat(makePage(bs8k, 5, 0, 1), makePage(bs8k, 5, 1, 1), makePage(bs8k, 5, 2, 1))
	sel, err := SelectPages(t.Context(), bytes.NewReader(data), int64(len(data)), SelectOptions{Threshold: threshold})
	if err != nil {
		t.Fatal(err)
	}
	h, pages := decodeAll(t, encode(t, bytes.NewReader(data), sel, bs8k))
	if h.FileSize != 3*bs8k || len(h.Blocks) != 0 || len(pages) != 0 {
		t.Fatalf("%+v %d", h, len(pages))
	}
}

func TestWriteIncrementRejects(t *testing.T) {
	t.Parallel()
	r := bytes.NewReader(make([]byte, 4*bs8k))
	cases := []struct {
		sel  Selection
		bs   int
		want string
	}{
		{Selection{FileSize: 4 * bs8k, Blocks: []uint32{1, 1}}, bs8k, "must increase"},
		{Selection{FileSize: 4 * bs8k, Blocks: []uint32{2, 1}}, bs8k, "must increase"},
		{Selection{FileSize: 4 * bs8k, Blocks: []uint32{4}}, bs8k, "past the file"},
		{Selection{FileSize: 4*bs8k - 1, Blocks: []uint32{4}}, bs8k, "past the file"},
		{Selection{FileSize: -1}, bs8k, "negative"},
		{Selection{}, 4000, "block size"},
	}
	for _, c := range cases {
		_, err := WriteIncrement(io.Discard, r, c.sel, c.bs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.sel, err, c.want)
		}
	}
}

type errWriter struct{ n int }

func (w *errWriter) Write(p []byte) (int, error) {
	if w.n < len(p) {
		n := w.n
		w.n = 0
		return n, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteIncrementWriteError(t *testing.T) {
	t.Parallel()
	data, sel := sampleFile(t, bs8k, 10)
	for _, limit := range []int{0, 10, 60, 9000, 20000} {
		n, err := WriteIncrement(&errWriter{n: limit}, bytes.NewReader(data), sel, bs8k)
		if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "base/1/2") {
			t.Errorf("limit %d: error %v", limit, err)
		}
		if n != int64(limit) {
			t.Errorf("limit %d: reported %d bytes", limit, n)
		}
	}
}

// rawIncrement builds an increment by hand, with correct CRCs, so that
// every header field can be made wrong.
func rawIncrement(magic string, version, bs uint32, size uint64, count uint32, blocks []uint32, pages int) []byte {
	be := binary.BigEndian
	b := []byte(magic)
	b = be.AppendUint32(b, version)
	b = be.AppendUint32(b, bs)
	b = be.AppendUint64(b, size)
	b = be.AppendUint32(b, count)
	for _, x := range blocks {
		b = be.AppendUint32(b, x)
	}
	b = be.AppendUint32(b, crc32.Checksum(b, castagnoli))
	b = append(b, make([]byte, pages*int(bs))...)
	return be.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func TestReaderRejects(t *testing.T) {
	t.Parallel()
	ok := rawIncrement(Magic, 1, 1024, 4096, 2, []uint32{1, 3}, 2)
	if _, _, err := readAll(ok); err != nil {
		t.Fatalf("valid raw increment: %v", err)
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated in the header"},
		{"magic", rawIncrement("WLRSINC2", 1, 1024, 4096, 2, []uint32{1, 3}, 2), "bad magic"},
		{"version", rawIncrement(Magic, 2, 1024, 4096, 2, []uint32{1, 3}, 2), "format version 2"},
		{"block size 0", rawIncrement(Magic, 1, 0, 4096, 0, nil, 0), "block size 0"},
		{"block size odd", rawIncrement(Magic, 1, 1000, 4096, 0, nil, 0), "block size 1000"},
		{"block size huge", rawIncrement(Magic, 1, 1<<31, 4096, 0, nil, 0), "block size"},
		{"file size huge", rawIncrement(Magic, 1, 1024, 1<<63, 0, nil, 0), "too large"},
		{"count > blocks", rawIncrement(Magic, 1, 1024, 4096, 5, []uint32{0, 1, 2, 3, 4}, 5), "5 blocks present in a file of 4"},
		{"count absurd", rawIncrement(Magic, 1, 1024, 4096, 1<<31, nil, 0), "blocks present"},
		{"count absurd, list short", rawIncrement(Magic, 1, 1024, 1<<40, 1<<30, []uint32{1}, 0), "truncated in the block list"},
		{"unsorted", rawIncrement(Magic, 1, 1024, 4096, 2, []uint32{3, 1}, 2), "block 1 after 3"},
		{"duplicate", rawIncrement(Magic, 1, 1024, 4096, 2, []uint32{1, 1}, 2), "block 1 after 1"},
		{"beyond size", rawIncrement(Magic, 1, 1024, 4096, 1, []uint32{4}, 1), "block 4 is past"},
		{"beyond partial size", rawIncrement(Magic, 1, 1024, 4097, 1, []uint32{5}, 1), "block 5 is past"},
		{"missing page", rawIncrement(Magic, 1, 1024, 4096, 2, []uint32{1, 3}, 1), "truncated"},
		{"extra page", rawIncrement(Magic, 1, 1024, 4096, 2, []uint32{1, 3}, 3), "checksum"},
		{"trailing data", append(bytes.Clone(ok), 0), "data after the trailing checksum"},
		{"header crc", func() []byte {
			b := bytes.Clone(ok)
			b[fixedHeaderSize+8] ^= 1
			return b
		}(), "header checksum"},
		{"page crc", func() []byte {
			b := bytes.Clone(ok)
			b[fixedHeaderSize+12+100] ^= 1
			return b
		}(), "trailing checksum"},
	}
	for _, c := range cases {
		_, _, err := readAll(c.in)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "read increment base/5/1.inc") ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want ErrCorrupt naming the file and %q", c.name, err, c.want)
		}
	}
}

// readAll decodes b completely.
func readAll(b []byte) (Increment, int, error) {
	rd, err := NewReader(bytes.NewReader(b), "base/5/1.inc")
	if err != nil {
		return Increment{}, 0, err
	}
	n := 0
	for {
		_, _, err := rd.Next()
		if err == io.EOF {
			// Sticky.
			if _, _, err := rd.Next(); err != io.EOF {
				return Increment{}, n, errors.New("EOF not sticky")
			}
			return rd.Header(), n, nil
		}
		if err != nil {
			if _, _, err2 := rd.Next(); err2 != err {
				return Increment{}, n, errors.New("error not sticky")
			}
			return Increment{}, n, err
		}
		n++
	}
}

func TestReaderEveryTruncationAndBitFlip(t *testing.T) {
	t.Parallel()
	data, sel := sampleFile(t, 1024, 7)
	inc := encode(t, bytes.NewReader(data), sel, 1024)
	for n := range len(inc) {
		if _, _, err := readAll(inc[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d: error %v", n, err)
		}
	}
	for i := range len(inc) {
		b := bytes.Clone(inc)
		b[i] ^= 0x20
		if _, _, err := readAll(b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at %d: error %v", i, err)
		}
	}
}

type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestReaderUnderlyingError(t *testing.T) {
	t.Parallel()
	data, sel := sampleFile(t, 1024, 4)
	inc := encode(t, bytes.NewReader(data), sel, 1024)
	rd, err := NewReader(errReader{bytes.NewReader(inc[:100])}, "x.inc")
	if err == nil {
		_, _, err = rd.Next()
	}
	if err == nil || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "connection reset") ||
		!strings.Contains(err.Error(), "x.inc") {
		t.Fatalf("error %v, want the reader's error naming the file", err)
	}
}

func FuzzReader(f *testing.F) {
	for _, n := range []int{0, 1, 5} {
		var data []byte
		var blocks []uint32
		for i := range n {
			data = append(data, makePage(1024, pg.LSN(i), uint32(i), uint64(i))...)
			if i%2 == 0 {
				blocks = append(blocks, uint32(i))
			}
		}
		var buf bytes.Buffer
		if _, err := WriteIncrement(&buf, bytes.NewReader(data), Selection{FileSize: int64(len(data)) - int64(n/2), Blocks: blocks}, 1024); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add(rawIncrement(Magic, 1, 1024, 1<<40, 1<<30, []uint32{1}, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := readAll(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if n != len(h.Blocks) || !slices.IsSorted(h.Blocks) {
			t.Fatalf("decoded %d pages of %d blocks", n, len(h.Blocks))
		}
		if len(b) != fixedHeaderSize+4*n+4+n*h.BlockSize+4 {
			t.Fatalf("accepted %d bytes for %d pages of %d", len(b), n, h.BlockSize)
		}
		// Applying it cannot write past the recorded size, rounded up.
		rd, _ := NewReader(bytes.NewReader(b), "fuzz")
		dst := &memFile{}
		var done BlockSet
		if _, err := ApplyIncrement(dst, rd, &done, h.FileSize); err != nil {
			t.Fatal(err)
		}
		if int64(len(dst.bytes())) > blockCount(h.FileSize, h.BlockSize)*int64(h.BlockSize) {
			t.Fatalf("wrote %d bytes for a file of %d", len(dst.bytes()), h.FileSize)
		}
	})
}
