package basebackup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/walrusdb/walrus/internal/progress"
)

// A restore streams each part on one goroutine: download, decrypt,
// decompress, checksum, untar. Writing the files it holds is handed to a
// second goroutine, the part's writeBehind, so that the disk writes (the
// most expensive system calls of a restore) run while the next bytes are
// decoded. The part's goroutine fills buffers of a fixed pool and queues
// them, in order, with the offset they go to; the writer writes them with
// pwrite and returns them to the pool; the queue also carries each file's
// last step (chmod, close, ...), run after its writes. Memory: the pool,
// writeBehindBuffers × copyBufferSize per part in flight.
//
// Files are written with direct I/O where the file system allows it: from
// these buffers to the device, without a copy into the page cache (which
// would be written back later anyway, and which a restore's data only
// pollutes). Such writes are aligned to directAlign; a file's last write
// is padded with zeros, cut again by truncate before the file is closed.

// writeBehindBuffers is the size of a part's buffer pool.
const writeBehindBuffers = 4

// errWriterFailed stands for the writer's error on the part's goroutine.
var errWriterFailed = errors.New("write-behind failed")

// writeOp is one queued step: write data to f at off, or (finish set) run
// finish after every earlier step, with the writer's first error.
type writeOp struct {
	f      *wbFile
	off    int64
	data   []byte // a pool buffer, or nil
	finish func(err error) error
}

// wbFile is a file being restored through a writeBehind. Its fields
// belong to the writer goroutine.
type wbFile struct {
	f *os.File
	// direct: writes bypass the page cache (O_DIRECT), each padded with
	// zeros to directAlign; padded records that the file holds such
	// padding past end, which truncate removes.
	direct, padded bool
	kick           int64 // start of the range whose writeback is not started yet
	end            int64 // end of the data written furthest
}

// directMinSize is the smallest file written with direct I/O: a direct
// write waits for the device, which a small file's single write would do
// alone; the page cache gathers small files better.
const directMinSize = 1 << 20

// newWBFile wraps f; direct asks for direct I/O, which f gets when the
// file system allows it. Only a file whose writes are long runs should
// ask, and only when the zeros that pad a write to directAlign never land
// on bytes another write fills.
func newWBFile(f *os.File, direct bool) *wbFile {
	return &wbFile{f: f, direct: direct && setDirect(f, true)}
}

// write writes data at off: directly when it can (off aligned; the
// length padded with zeros to directAlign, within data's capacity),
// through the page cache otherwise, for good if the device refused.
func (f *wbFile) write(data []byte, off int64) error {
	n := len(data)
	if f.direct && off%directAlign == 0 {
		out := data
		if r := n % directAlign; r != 0 && n+directAlign-r <= cap(data) {
			out = data[:n+directAlign-r]
			clear(out[n:])
		}
		if len(out)%directAlign == 0 {
			_, err := f.f.WriteAt(out, off)
			if err == nil {
				f.end = max(f.end, off+int64(n))
				f.padded = f.padded || len(out) != n
				return nil
			}
			if !errors.Is(err, syscall.EINVAL) {
				return err
			}
		}
	}
	if f.direct {
		f.direct = setDirect(f.f, false)
	}
	if _, err := f.f.WriteAt(data, off); err != nil {
		return err
	}
	f.end = max(f.end, off+int64(n))
	if f.end-f.kick >= writebackEvery {
		startWriteback(f.f, f.kick, f.end-f.kick)
		f.kick = f.end
	}
	return nil
}

// truncate cuts the padding of the last direct write.
func (f *wbFile) truncate() error {
	if !f.padded {
		return nil
	}
	return f.f.Truncate(f.end)
}

// writeBehind writes a part's files on a goroutine of its own.
type writeBehind struct {
	ops  chan writeOp
	pool chan []byte
	done chan struct{}

	mu  sync.Mutex
	err error // the writer's first error
}

// newWriteBehind starts a part's writer. close must be called.
func newWriteBehind() *writeBehind {
	w := &writeBehind{
		ops:  make(chan writeOp, writeBehindBuffers),
		pool: make(chan []byte, writeBehindBuffers),
		done: make(chan struct{}),
	}
	for range writeBehindBuffers {
		w.pool <- alignedBuffer(copyBufferSize)
	}
	go w.run()
	return w
}

// run executes the queued steps in order. After an error it only returns
// buffers and runs finish steps (which close their files) with it.
func (w *writeBehind) run() {
	defer close(w.done)
	for op := range w.ops {
		err := w.failed()
		if op.data != nil {
			if err == nil {
				if werr := op.f.write(op.data, op.off); werr != nil {
					w.fail(fmt.Errorf("restore %s: %w", op.f.f.Name(), werr))
				}
			}
			w.pool <- op.data[:cap(op.data)]
		}
		if op.finish != nil {
			if ferr := op.finish(w.failed()); ferr != nil {
				w.fail(ferr)
			}
		}
	}
}

func (w *writeBehind) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *writeBehind) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// buffer returns a free buffer of copyBufferSize bytes, waiting for one.
func (w *writeBehind) buffer(ctx context.Context) ([]byte, error) {
	if err := w.failed(); err != nil {
		return nil, err
	}
	select {
	case b := <-w.pool:
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// write queues data, a buffer from buffer, to be written to f at off.
func (w *writeBehind) write(f *wbFile, off int64, data []byte) {
	w.ops <- writeOp{f: f, off: off, data: data}
}

// finish queues fn to run after every write queued before; fn gets the
// writer's first error (nil if none) and must close the file.
func (w *writeBehind) finish(f *wbFile, fn func(err error) error) {
	w.ops <- writeOp{f: f, finish: fn}
}

// close waits for every queued step and returns the writer's first error.
func (w *writeBehind) close() error {
	close(w.ops)
	<-w.done
	return w.failed()
}

// alignedBuffer returns n bytes (a multiple of directAlign) starting at a
// multiple of directAlign, as direct I/O wants; its capacity is n.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	off := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[off : off+n : off+n]
}

// startRemaining starts the writeback of what f holds past its last kick.
func (f *wbFile) startRemaining() {
	if !f.direct && f.end > f.kick {
		startWriteback(f.f, f.kick, 0)
		f.kick = f.end
	}
}

// wbWriterAt gathers the writes of delta.ApplyIncrement and
// delta.ApplyWhole (a page each) into pool buffers of adjacent pages, and
// queues each buffer when the next write is not adjacent or it is full.
type wbWriterAt struct {
	ctx  context.Context
	w    *writeBehind
	f    *wbFile
	prog *progress.Line
	buf  []byte // the buffer being filled, or nil
	off  int64  // where buf goes
}

// WriteAt implements io.WriterAt. The bytes are written later: an error
// of the writer shows here or in flush.
func (a *wbWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if a.buf != nil && (off != a.off+int64(len(a.buf)) || len(a.buf)+len(p) > cap(a.buf)) {
		a.queue()
	}
	if a.buf == nil {
		b, err := a.w.buffer(a.ctx)
		if err != nil {
			return 0, err
		}
		if len(p) > len(b) {
			a.w.pool <- b
			return 0, fmt.Errorf("restore %s: a write of %d bytes is larger than the write buffer (internal error)", a.f.f.Name(), len(p))
		}
		a.buf, a.off = b[:0], off
	}
	a.buf = append(a.buf, p...)
	a.prog.AddBytes(int64(len(p)))
	return len(p), nil
}

// queue hands the buffer being filled to the writer.
func (a *wbWriterAt) queue() {
	if a.buf != nil {
		a.w.write(a.f, a.off, a.buf)
		a.buf = nil
	}
}

// flush queues what is gathered; the writer's error, if it failed.
func (a *wbWriterAt) flush() error {
	a.queue()
	return a.w.failed()
}

// release gives back the buffer being filled without writing it (after a
// failure of the caller).
func (a *wbWriterAt) release() {
	if a.buf != nil {
		a.w.pool <- a.buf[:cap(a.buf)]
		a.buf = nil
	}
}
