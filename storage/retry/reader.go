package retry

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/walrusdb/walrus/internal/wait"
	"github.com/walrusdb/walrus/storage"
)

// Get opens the object, retrying the opening, and returns a reader that
// resumes a broken transfer where it broke (see the package
// documentation).
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.open(ctx, key, 0, -1, false)
}

// GetRange is Get for length bytes from offset (length < 0: to the end).
// It works on any inner store: one without GetRange is read from the start
// and the bytes before offset are skipped.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
	}
	return s.open(ctx, key, offset, length, true)
}

func (s *Store) open(ctx context.Context, key string, offset, length int64, ranged bool) (io.ReadCloser, error) {
	r := &reader{s: s, ctx: ctx, key: key, off: offset, remain: length, ranged: ranged}
	if err := r.openNext(); err != nil {
		return nil, err
	}
	return r, nil
}

// reader reads an object and, when the transfer breaks with a retryable
// error, opens the rest of it (from the next byte to deliver) and goes on.
// Consecutive failures without a byte of progress are bounded by
// MaxAttempts.
type reader struct {
	s   *Store
	ctx context.Context // the caller's
	key string

	off    int64 // offset of the next byte to deliver
	remain int64 // bytes left to deliver, or -1 for all to the end
	ranged bool  // the caller asked for a range

	cur    io.ReadCloser // the open transfer, or nil
	actx   context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer

	pending  error // why cur broke; openNext waits before reopening
	failures int   // consecutive failures without progress
	err      error // sticky: io.EOF or the final error
}

// openNext opens the object from r.off, waiting and retrying as needed.
func (r *reader) openNext() error {
	opts := r.s.opts
	for {
		if r.pending != nil {
			r.failures++
			if r.failures >= opts.MaxAttempts {
				return fmt.Errorf("get %s: %w (gave up at byte %d after %d attempts: check the repository's server and the network, or raise retry.max_attempts)", r.key, r.pending, r.off, r.failures)
			}
			d := opts.Delay(r.failures)
			r.s.onRetry(r.pending, r.failures, d)
			if err := wait.Sleep(r.ctx, d); err != nil {
				return fmt.Errorf("get %s: %w (stopped retrying: %w)", r.key, r.pending, err)
			}
			r.pending = nil
		}
		err := r.openOnce()
		if err == nil {
			return nil
		}
		if !retryable(r.ctx, err) {
			return unmark(err)
		}
		r.pending = err
	}
}

// openOnce makes one attempt at opening the rest of the object.
func (r *reader) openOnce() error {
	actx, cancel, t := r.s.attempt(r.ctx)
	rc, err := r.s.openInner(actx, r.key, r.off, r.remain, r.ranged || r.off > 0)
	if t != nil {
		t.Stop()
	}
	if err != nil {
		err = r.s.timedOut(r.ctx, actx, err)
		cancel(nil)
		return err
	}
	r.cur, r.actx, r.cancel, r.timer = rc, actx, cancel, t
	return nil
}

// openInner opens [off, off+length) of the object in the inner store.
func (s *Store) openInner(ctx context.Context, key string, off, length int64, ranged bool) (io.ReadCloser, error) {
	if !ranged {
		return s.inner.Get(ctx, key)
	}
	if rg, ok := s.inner.(storage.RangeGetter); ok {
		return rg.GetRange(ctx, key, off, length)
	}
	rc, err := s.inner.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, rc, off); err != nil && err != io.EOF {
		rc.Close()
		return nil, fmt.Errorf("get %s: skip to byte %d: %w", key, off, err)
	}
	if length < 0 {
		return rc, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, length), rc}, nil
}

// Read delivers the object's bytes, reopening a broken transfer.
func (r *reader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.cur == nil {
			if err := r.openNext(); err != nil {
				r.err = err
				return 0, err
			}
		}
		n, err := r.readCur(p)
		r.off += int64(n)
		if r.remain > 0 {
			r.remain = max(r.remain-int64(n), 0)
		}
		if n > 0 {
			r.failures = 0
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF:
			r.err = io.EOF
			r.closeCur()
			return n, io.EOF
		}
		r.closeCur()
		if !retryable(r.ctx, err) {
			r.err = fmt.Errorf("get %s: read at byte %d: %w", r.key, r.off, unmark(err))
		} else {
			r.pending = err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// readCur reads from the open transfer with CallTimeout running.
func (r *reader) readCur(p []byte) (int, error) {
	if r.timer != nil {
		r.timer.Reset(r.s.opts.CallTimeout)
	}
	n, err := r.cur.Read(p)
	if r.timer != nil {
		r.timer.Stop()
	}
	if err != nil && err != io.EOF {
		err = r.s.timedOut(r.ctx, r.actx, err)
	}
	return n, err
}

func (r *reader) closeCur() error {
	if r.cur == nil {
		return nil
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	err := r.cur.Close()
	r.cancel(nil)
	r.cur, r.actx, r.cancel, r.timer = nil, nil, nil, nil
	return err
}

// Close closes the open transfer.
func (r *reader) Close() error {
	if r.err == nil {
		r.err = fmt.Errorf("get %s: read after close", r.key)
	}
	return r.closeCur()
}
