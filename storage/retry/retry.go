package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/walrusdb/walrus/internal/wait"
)

// Defaults used for zero Options fields.
const (
	DefaultMaxAttempts = 5
	DefaultBaseDelay   = 100 * time.Millisecond
	DefaultMaxDelay    = 5 * time.Second
)

// Options say how often and how patiently to retry.
type Options struct {
	// MaxAttempts is the most attempts one operation gets, the first one
	// included; 0 means DefaultMaxAttempts and 1 means no retries.
	MaxAttempts int
	// BaseDelay is the wait before the first retry; each further retry
	// waits twice as long, up to MaxDelay, with jitter. 0 means
	// DefaultBaseDelay.
	BaseDelay time.Duration
	// MaxDelay caps the wait between attempts; 0 means DefaultMaxDelay.
	MaxDelay time.Duration
	// CallTimeout bounds one attempt of a storage call that does not
	// carry a body: Stat, each batch of Delete, the wait for the next
	// entry of List, the opening of Get and each Read of its body. It
	// never bounds Put (an upload takes as long as its size needs) nor
	// the time a caller spends between Reads or inside List's callback.
	// 0 means no per-call timeout. Only Store uses it; Do does not.
	CallTimeout time.Duration
	// OnRetry, when set, is called before each wait with the error of
	// the failed attempt, the number of attempts made so far and the wait.
	// It must be safe for concurrent use.
	OnRetry func(err error, attempt int, delay time.Duration)
}

func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = DefaultBaseDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxDelay < o.BaseDelay {
		o.MaxDelay = o.BaseDelay
	}
	return o
}

// Delay returns the wait after the given number of failed attempts (1 for
// the wait before the second attempt): BaseDelay doubled per attempt,
// capped at MaxDelay, of which the upper half is random ("equal jitter"),
// so that clients failing together do not retry together.
func (o Options) Delay(failures int) time.Duration {
	o = o.withDefaults()
	d := o.MaxDelay
	if failures < 1 {
		failures = 1
	}
	if shift := failures - 1; shift < 30 && o.BaseDelay<<shift < o.MaxDelay {
		d = o.BaseDelay << shift
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Do calls fn until it succeeds, fails with an error that is not worth
// retrying, ctx ends, or MaxAttempts attempts were made. fn receives ctx
// as is: Do applies no per-call timeout. An error is retried when
// IsRetryable says so, or when it is a deadline error while ctx itself is
// still live (the timeout of a lower layer). Mark an error with Permanent
// to stop at once; Do returns the error without the mark.
//
// The error returned is fn's last one; when attempts ran out it says how
// many were made, and when ctx ended during a wait it also wraps ctx's
// error.
func Do(ctx context.Context, opts Options, fn func(ctx context.Context) error) error {
	opts = opts.withDefaults()
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if !retryable(ctx, err) {
			return unmark(err)
		}
		if attempt >= opts.MaxAttempts {
			return exhausted(err, attempt)
		}
		d := opts.Delay(attempt)
		if opts.OnRetry != nil {
			opts.OnRetry(err, attempt, d)
		}
		if serr := wait.Sleep(ctx, d); serr != nil {
			return fmt.Errorf("%w (stopped retrying: %w)", unmark(err), serr)
		}
	}
}

// exhausted says that err, retryable, was met on the last attempt allowed.
func exhausted(err error, attempts int) error {
	if attempts <= 1 {
		return fmt.Errorf("%w (not retried: retry.max_attempts is 1)", err)
	}
	return fmt.Errorf("%w (gave up after %d attempts: check the repository's server and the network, or raise retry.max_attempts)", err, attempts)
}

// retryable is Do's decision.
func retryable(ctx context.Context, err error) bool {
	switch {
	case ctx.Err() != nil:
		return false
	case isPermanent(err):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		// Not ctx's deadline, since ctx is live: a lower layer's timeout.
		return true
	}
	return IsRetryable(err)
}

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err so that Do returns it without retrying, whatever
// its kind. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// unmark removes a Permanent mark at the top of err.
func unmark(err error) error {
	if p, ok := err.(*permanentError); ok {
		return p.err
	}
	return err
}
