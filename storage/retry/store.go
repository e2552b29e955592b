package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walrusdb/walrus/storage"
)

// deleteBatch is how many keys one attempt of Delete hands to the inner
// store: a failure retries only its batch, and CallTimeout bounds a batch.
const deleteBatch = 1000

// errCallTimeout is the cause with which CallTimeout cancels an attempt.
var errCallTimeout = errors.New("retry: call timeout")

// Reopener is an optional interface of a Put body that can deliver its
// whole content again, from its first byte, for another attempt. Store
// uses it in preference to io.Seeker.
type Reopener interface {
	// Reopen returns a reader of the whole body. It is called between
	// attempts, never while the previous reader is being read.
	Reopen() (io.Reader, error)
}

// Store is a storage.Store that retries the calls of another one. See the
// package documentation for what is retried and how.
type Store struct {
	inner   storage.Store
	opts    Options
	retries atomic.Int64
}

var (
	_ storage.Store       = (*Store)(nil)
	_ storage.RangeGetter = (*Store)(nil)
)

// New wraps inner. Zero Options fields take their defaults.
func New(inner storage.Store, opts Options) *Store {
	return &Store{inner: inner, opts: opts.withDefaults()}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() storage.Store { return s.inner }

// Retries returns how many retries the store has made so far, over all
// calls: attempts after the first, and resumptions of Get bodies.
func (s *Store) Retries() int64 { return s.retries.Load() }

// Close closes the wrapped store.
func (s *Store) Close() error { return s.inner.Close() }

// Local reports whether the inner store is local (storage.Local).
func (s *Store) Local() bool { return storage.IsLocal(s.inner) }

// do is Do with the store's options, counting retries.
func (s *Store) do(ctx context.Context, fn func(ctx context.Context) error) error {
	opts := s.opts
	opts.OnRetry = s.onRetry
	return Do(ctx, opts, fn)
}

func (s *Store) onRetry(err error, attempt int, d time.Duration) {
	s.retries.Add(1)
	if s.opts.OnRetry != nil {
		s.opts.OnRetry(err, attempt, d)
	}
}

// attempt returns a context for one attempt that CallTimeout cancels, and
// the timer that does it (nil without a timeout). The caller must call
// cancel, and may Stop and Reset the timer to pause the timeout.
func (s *Store) attempt(ctx context.Context) (context.Context, context.CancelCauseFunc, *time.Timer) {
	actx, cancel := context.WithCancelCause(ctx)
	if s.opts.CallTimeout <= 0 {
		return actx, cancel, nil
	}
	return actx, cancel, time.AfterFunc(s.opts.CallTimeout, func() { cancel(errCallTimeout) })
}

// timedOut turns the error of an attempt that CallTimeout stopped into a
// retryable timeout error; other errors pass unchanged.
func (s *Store) timedOut(ctx, actx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errCallTimeout) {
		return &timeoutError{timeout: s.opts.CallTimeout.String(), err: err}
	}
	return err
}

// call runs one attempt of a call without a body under CallTimeout.
func (s *Store) call(ctx context.Context, fn func(ctx context.Context) error) error {
	actx, cancel, t := s.attempt(ctx)
	defer cancel(nil)
	if t != nil {
		defer t.Stop()
	}
	return s.timedOut(ctx, actx, fn(actx))
}

// Stat retries the inner Stat. ErrNotFound is never retried.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	var info storage.ObjectInfo
	err := s.do(ctx, func(ctx context.Context) error {
		return s.call(ctx, func(ctx context.Context) error {
			var err error
			info, err = s.inner.Stat(ctx, key)
			return err
		})
	})
	return info, err
}

// Delete validates every key, then deletes them in batches of 1000, each
// retried on its own (deleting is idempotent).
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := storage.ValidateKey(k); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	batches := slices.Collect(slices.Chunk(keys, deleteBatch))
	if len(keys) == 0 {
		batches = [][]string{nil}
	}
	for _, batch := range batches {
		err := s.do(ctx, func(ctx context.Context) error {
			return s.call(ctx, func(ctx context.Context) error {
				return s.inner.Delete(ctx, batch...)
			})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// List retries a listing that breaks, resuming after the last key already
// given to fn: fn sees every key once, in order, whatever the retries.
// fn's own error is returned as is and never retried. CallTimeout bounds
// the wait for each next entry, not the time fn takes.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	var (
		started bool
		last    string
	)
	return s.do(ctx, func(ctx context.Context) error {
		actx, cancel, t := s.attempt(ctx)
		defer cancel(nil)
		if t != nil {
			defer t.Stop()
		}
		var fnErr error
		err := s.inner.List(actx, prefix, func(info storage.ObjectInfo) error {
			if started && info.Key <= last {
				return nil // given to fn by an earlier attempt
			}
			started, last = true, info.Key
			if t != nil {
				t.Stop()
				defer t.Reset(s.opts.CallTimeout)
			}
			fnErr = fn(info)
			return fnErr
		})
		if fnErr != nil {
			return Permanent(fnErr)
		}
		return s.timedOut(ctx, actx, err)
	})
}

// Put retries the inner Put while the body can be sent again whole: see
// the package documentation.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	src := newSource(r)
	return s.do(ctx, func(ctx context.Context) error {
		b, err := src.next()
		if err != nil {
			return Permanent(fmt.Errorf("put %s: rewind the body for another attempt: %w", key, err))
		}
		cr := &countingReader{r: b}
		var body io.Reader = cr
		if _, ok := b.(storage.MemoryBody); ok {
			// It cannot fail and is rewound for each attempt: no need
			// to count, and the backend may then send it without a copy.
			body = b
		}
		err = s.inner.Put(ctx, key, body, opts)
		switch {
		case err == nil:
			return nil
		case cr.Err() != nil:
			// The body failed: the caller's problem, not the store's.
			return Permanent(err)
		case opts.IfNotExists && errors.Is(err, storage.ErrExists) && src.rereadable():
			if same, cerr := s.sameObject(ctx, key, src, opts); cerr == nil && same {
				return nil
			}
			return err
		case !retryable(ctx, err):
			return err
		case cr.N() > 0 && !src.rereadable():
			return Permanent(fmt.Errorf("%w (not retried: %d bytes of the body were already consumed and it cannot be read again)", err, cr.N()))
		}
		return err
	})
}

// sameObject reports whether the object stored under key holds exactly
// the body and metadata of this Put: then an earlier attempt (or the
// backend's own retry) stored it, and its answer was lost.
func (s *Store) sameObject(ctx context.Context, key string, src *source, opts storage.PutOptions) (bool, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return false, err
	}
	if len(info.Metadata) != 0 || len(opts.Metadata) != 0 {
		if !maps.Equal(info.Metadata, opts.Metadata) {
			return false, nil
		}
	}
	if opts.Size > 0 && info.Size != opts.Size {
		return false, nil
	}
	b, err := src.next()
	if err != nil {
		return false, err
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	return equalStreams(b, rc)
}

// equalStreams reports whether a and b deliver the same bytes.
func equalStreams(a, b io.Reader) (bool, error) {
	const chunk = 64 << 10
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for {
		na, erra := io.ReadFull(a, ba)
		nb, errb := io.ReadFull(b, bb)
		if !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := erra == io.EOF || erra == io.ErrUnexpectedEOF
		endB := errb == io.EOF || errb == io.ErrUnexpectedEOF
		switch {
		case erra != nil && !endA:
			return false, erra
		case errb != nil && !endB:
			return false, errb
		case endA || endB:
			return endA && endB, nil
		}
	}
}

// source hands out the body of each attempt of a Put.
type source struct {
	r        io.Reader
	reopener Reopener
	seeker   io.Seeker
	start    int64
	attempts int
}

func newSource(r io.Reader) *source {
	s := &source{r: r}
	if ro, ok := r.(Reopener); ok {
		s.reopener = ro
		return s
	}
	if sk, ok := r.(io.Seeker); ok {
		// A pipe or a socket may claim to seek and fail.
		if pos, err := sk.Seek(0, io.SeekCurrent); err == nil {
			s.seeker, s.start = sk, pos
		}
	}
	return s
}

// rereadable reports whether the whole body can be read again.
func (s *source) rereadable() bool { return s.reopener != nil || s.seeker != nil }

// next returns the body for the next attempt: r itself the first time,
// then r reopened or rewound to where it started. A body that cannot be
// read again is returned as it is: Put retries it only when nothing of it
// was consumed.
func (s *source) next() (io.Reader, error) {
	s.attempts++
	switch {
	case s.attempts == 1:
		return s.r, nil
	case s.reopener != nil:
		return s.reopener.Reopen()
	case s.seeker != nil:
		if _, err := s.seeker.Seek(s.start, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return s.r, nil
}

// countingReader counts what the inner store consumed of a body and keeps
// the body's own failure apart from the store's.
type countingReader struct {
	r  io.Reader
	n  atomic.Int64
	mu sync.Mutex
	// err is the body's first failure other than io.EOF.
	err error
}

// Read reads from the body.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if err != nil && err != io.EOF {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// N returns the number of bytes consumed.
func (c *countingReader) N() int64 { return c.n.Load() }

// Err returns the body's failure, if any.
func (c *countingReader) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
