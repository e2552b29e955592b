package walpush

import (
	"errors"
	"io"
	"sync"
)

// errNoBuffer means a single-pass push found no room in the process's
// buffer budget for its encoded object; the push streams instead.
var errNoBuffer = errors.New("no room left in the buffer budget")

// bufChunk is the size of the pieces single-pass buffers are made of.
const bufChunk = 1 << 20

// chunkPool hands out the chunks that single-pass buffers are made of. Its
// limit bounds the chunks handed out and kept idle together, so a
// process's memory stays flat at any concurrency. A buffer takes chunks
// as the encoder fills it, so it costs what the compressed object needs
// (a 16 MiB segment of WAL usually compresses to 1-8 MiB), never a copy
// to grow; a push whose buffer finds no chunk streams instead (see push).
// Before, each push reserved room for the whole segment up front, so only
// two pushes of a process fitted and the others at concurrency 4 took the
// streamed path, which reads the file twice.
type chunkPool struct {
	mu    sync.Mutex
	limit int      // chunks
	held  int      // chunks handed out and idle
	idle  [][]byte // chunks to reuse, so a daemon's heap stays flat
}

// newChunkPool returns a pool of at most limit bytes.
func newChunkPool(limit int64) *chunkPool { return &chunkPool{limit: int(limit / bufChunk)} }

// get returns a chunk, or errNoBuffer when the limit is reached.
func (p *chunkPool) get() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		return c, nil
	}
	if p.held >= p.limit {
		return nil, errNoBuffer
	}
	p.held++
	return make([]byte, bufChunk), nil
}

// put keeps chunks handed out by get for reuse.
func (p *chunkPool) put(chunks [][]byte) {
	p.mu.Lock()
	p.idle = append(p.idle, chunks...)
	p.mu.Unlock()
}

// chunkBuffer is an object encoded into memory, in chunks of a
// chunkPool. Write appends; ReadAt reads it back, so that
// io.NewSectionReader makes a body a retried upload can rewind.
type chunkBuffer struct {
	pool   *chunkPool
	chunks [][]byte
	size   int64
}

// Write appends b, or fails with errNoBuffer when the pool has no chunk
// left.
func (w *chunkBuffer) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		off := int(w.size % bufChunk)
		if off == 0 && int64(len(w.chunks))*bufChunk == w.size {
			c, err := w.pool.get()
			if err != nil {
				return n, err
			}
			w.chunks = append(w.chunks, c)
		}
		k := copy(w.chunks[len(w.chunks)-1][off:], b)
		b = b[k:]
		n += k
		w.size += int64(k)
	}
	return n, nil
}

// ReadAt reads len(p) bytes of the object from off.
func (w *chunkBuffer) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("chunkBuffer.ReadAt: negative offset")
	}
	n := 0
	for len(p) > 0 && off < w.size {
		c := w.chunks[off/bufChunk][off%bufChunk:]
		if rest := w.size - off; int64(len(c)) > rest {
			c = c[:rest]
		}
		k := copy(p, c)
		p = p[k:]
		n += k
		off += int64(k)
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

// Len returns the size of the object.
func (w *chunkBuffer) Len() int64 { return w.size }

// release gives the chunks back to the pool; the buffer is empty after.
func (w *chunkBuffer) release() {
	if w == nil {
		return
	}
	w.pool.put(w.chunks)
	w.chunks, w.size = nil, 0
}
