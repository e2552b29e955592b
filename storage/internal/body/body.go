package body

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrSizeMismatch is returned (wrapped) when a body delivers a different
// number of bytes than it declared.
var ErrSizeMismatch = errors.New("body size differs from the declared size")

// Reader wraps a Put body. It is not safe for concurrent Reads, like any
// io.Reader, but Err may be called from any goroutine.
type Reader struct {
	ctx  context.Context
	r    io.Reader
	size int64 // declared size, or -1
	n    int64

	mu  sync.Mutex
	err error // first error of r, or a size mismatch
}

// New wraps r. size is PutOptions.Size: a positive value is enforced, as is
// 0 when r is known to be empty (the caller decides; pass -1 otherwise).
func New(ctx context.Context, r io.Reader, size int64) *Reader {
	if size < 0 {
		size = -1
	}
	return &Reader{ctx: ctx, r: r, size: size}
}

// Declared converts PutOptions.Size into the size to pass to New: positive
// sizes are kept; 0 and negative sizes mean unknown, since the Store
// contract treats 0 as unknown unless the body is empty.
func Declared(size int64) int64 {
	if size > 0 {
		return size
	}
	return -1
}

// Read reads from the body, failing once the context is done, the body
// fails, or more bytes arrive than declared. At the end of the body it
// returns io.EOF only when the declared size, if any, was met.
func (b *Reader) Read(p []byte) (int, error) {
	if err := b.Err(); err != nil {
		return 0, err
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.size >= 0 && b.n > b.size {
		return 0, b.fail(fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, b.size))
	}
	switch {
	case err == io.EOF:
		if b.size >= 0 && b.n != b.size {
			return n, b.fail(fmt.Errorf("%w: %d bytes, declared %d", ErrSizeMismatch, b.n, b.size))
		}
		return n, io.EOF
	case err != nil:
		return n, b.fail(fmt.Errorf("read body: %w", err))
	}
	return n, nil
}

// N returns the number of bytes read so far.
func (b *Reader) N() int64 { return b.n }

// Err returns the body's first failure (its own error or a size
// mismatch), or nil. A done context is not recorded here.
func (b *Reader) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *Reader) fail(err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	return b.err
}
