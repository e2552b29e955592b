package delta

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"
	"testing"

	"github.com/walrusdb/walrus/pg"
)

// makePage returns a page laid out as PostgreSQL's PageInit does, with a
// few tuples' worth of bytes derived from tag, the given LSN, and a correct
// checksum for fork block number forkBlock.
func makePage(bs int, lsn pg.LSN, forkBlock uint32, tag uint64) []byte {
	p := make([]byte, bs)
	le := binary.LittleEndian
	le.PutUint32(p[0:], uint32(lsn>>32))
	le.PutUint32(p[4:], uint32(lsn))
	upper := bs - 64
	le.PutUint16(p[12:], pg.SizeOfPageHeader+8)
	le.PutUint16(p[14:], uint16(upper))
	le.PutUint16(p[16:], uint16(bs))
	le.PutUint16(p[18:], uint16(bs|pg.PageLayoutVersion))
	for i := upper; i+8 <= bs; i += 8 {
		le.PutUint64(p[i:], tag*0x9E3779B97F4A7C15+uint64(i))
	}
	le.PutUint16(p[8:], pg.PageChecksum(p, forkBlock))
	return p
}

// memFile is an in-memory file: io.ReaderAt, io.WriterAt and File.
type memFile struct {
	mu   sync.Mutex
	data []byte
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.data)) {
		f.data = append(f.data, make([]byte, end-int64(len(f.data)))...)
	}
	return copy(f.data[off:], p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if size <= int64(len(f.data)) {
		f.data = f.data[:size]
	} else {
		f.data = append(f.data, make([]byte, size-int64(len(f.data)))...)
	}
	return nil
}

func (f *memFile) bytes() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.data)
}

// countingReaderAt counts reads per offset and can hand out a different
// content the first time a block is read, as a page torn by a concurrent
// write would look.
type countingReaderAt struct {
	mu    sync.Mutex
	data  []byte
	first map[int64][]byte // offset → content of the first read covering it
	reads map[int64]int
}

func (r *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reads == nil {
		r.reads = map[int64]int{}
	}
	r.reads[off]++
	if off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[off:])
	for o, content := range r.first {
		if o >= off && o+int64(len(content)) <= off+int64(n) {
			copy(p[o-off:], content)
			delete(r.first, o)
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// encode runs WriteIncrement into a buffer.
func encode(t *testing.T, r io.ReaderAt, sel Selection, bs int) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := WriteIncrement(&buf, r, sel, bs)
	if err != nil {
		t.Fatalf("WriteIncrement: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteIncrement returned %d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

// decodeAll reads a whole increment.
func decodeAll(t *testing.T, b []byte) (Increment, map[uint32][]byte) {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(b), "test")
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	pages := map[uint32][]byte{}
	for {
		blk, page, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		pages[blk] = bytes.Clone(page)
	}
	return rd.Header(), pages
}
