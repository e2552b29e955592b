package faulty

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/walrusdb/walrus/internal/wait"
	"github.com/walrusdb/walrus/storage"
)

// Op selects Store methods; combine them with |.
type Op uint8

// The methods a Rule can apply to. Get covers GetRange too.
const (
	Put Op = 1 << iota
	Get
	Stat
	List
	Delete
	// All is every method.
	All = Put | Get | Stat | List | Delete
)

var opNames = []struct {
	op   Op
	name string
}{{Put, "put"}, {Get, "get"}, {Stat, "stat"}, {List, "list"}, {Delete, "delete"}}

// String names the methods in op, e.g. "put|get".
func (op Op) String() string {
	var names []string
	for _, n := range opNames {
		if op&n.op != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// Kind is what a rule does when it fires.
type Kind int

const (
	// Fail returns the rule's error without calling the inner store.
	Fail Kind = iota
	// FailAfter calls the inner store, then returns the rule's error as
	// if the answer had been lost: the operation took effect. For Get the
	// opened object is closed; for List every entry is delivered first.
	FailAfter
	// BreakBody lets the call start and breaks its data after N units:
	// a Get body fails after N bytes (with io.ErrUnexpectedEOF unless Err
	// is set); a Put body, as the inner store reads it, fails after N
	// bytes, as a connection breaking mid-upload would; List fails after N
	// entries. On Stat and Delete it is Fail.
	BreakBody
	// Delay waits Latency (or until the context ends), then lets the call
	// go on; other rules may still fire on the same call.
	Delay
	// StallBody is BreakBody that hangs instead of failing: after N units
	// the data stops coming until the call's context ends, and then fails
	// with the context's error, as a connection that went silent does. On
	// Stat and Delete the call hangs the same way before reaching the
	// inner store.
	StallBody
	numKinds
)

var kindNames = [numKinds]string{"fail", "fail-after", "break-body", "delay", "stall-body"}

// String names the kind.
func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Rule is one scripted fault.
type Rule struct {
	// Ops are the methods the rule applies to.
	Ops Op
	// Prefix limits the rule to keys (for List: prefixes) that start with
	// it; "" matches all.
	Prefix string
	// Kind is what the rule does.
	Kind Kind
	// Err is the error injected; nil means ErrTransient (and
	// io.ErrUnexpectedEOF for a Get body broken by BreakBody).
	Err error
	// N is the number of bytes (or List entries) that BreakBody lets
	// through.
	N int64
	// Latency is Delay's wait.
	Latency time.Duration
	// Calls are the calls on which the rule fires, numbered from 1 over
	// the calls that the rule matches (Ops and Prefix), whether or not
	// another rule acts on them.
	Calls []int
	// Rate is the probability that the rule fires on a matching call,
	// drawn from the Script's seeded generator.
	Rate float64
	// Max bounds how often the rule fires; 0 means no bound.
	Max int
}

// Script is the set of faults a Store injects. A rule with neither Calls
// nor Rate fires on every call it matches. On each call every Delay rule
// that fires waits, then the first other rule that fires acts.
type Script struct {
	// Seed seeds the generator behind Rate, so a run can be repeated.
	Seed uint64
	// Rules are tried in order.
	Rules []Rule
}

// Error is an injected error. It says whether it is retryable in the way
// the AWS SDK's errors do (a RetryableError method), which
// storage/retry understands.
type Error struct {
	msg       string
	retryable bool
}

func (e *Error) Error() string { return e.msg }

// RetryableError reports whether another attempt may succeed.
func (e *Error) RetryableError() bool { return e.retryable }

// The default injected errors.
var (
	// ErrTransient is a failure that a retry may not meet.
	ErrTransient = &Error{msg: "faulty: injected transient failure", retryable: true}
	// ErrPermanent is a failure that every retry meets.
	ErrPermanent = &Error{msg: "faulty: injected permanent failure", retryable: false}
)

// Store is a storage.Store that injects the faults of a Script into the
// calls of another store. It is safe for concurrent use; rules fire in
// the order calls reach them.
type Store struct {
	inner storage.Store

	mu     sync.Mutex
	rules  []Rule
	seen   []int // calls matched, per rule
	fired  []int // times fired, per rule
	rng    *rand.Rand
	calls  map[Op]int64
	faults map[Op]int64
	kinds  [numKinds]int64
}

var (
	_ storage.Store       = (*Store)(nil)
	_ storage.RangeGetter = (*Store)(nil)
)

// New wraps inner with the faults of script.
func New(inner storage.Store, script Script) *Store {
	n := len(script.Rules)
	return &Store{
		inner:  inner,
		rules:  slices.Clone(script.Rules),
		seen:   make([]int, n),
		fired:  make([]int, n),
		rng:    rand.New(rand.NewPCG(script.Seed, script.Seed^0x9e3779b97f4a7c15)),
		calls:  map[Op]int64{},
		faults: map[Op]int64{},
	}
}

// Unwrap returns the wrapped store.
func (s *Store) Unwrap() storage.Store { return s.inner }

// Calls returns how many calls of the methods in op the store received.
func (s *Store) Calls(op Op) int64 { return s.sum(s.calls, op) }

// Faults returns how many faults were injected into calls of the methods
// in op (a call delayed and then failed counts twice).
func (s *Store) Faults(op Op) int64 { return s.sum(s.faults, op) }

// FaultsOf returns how many faults of kind k were injected.
func (s *Store) FaultsOf(k Kind) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k < 0 || k >= numKinds {
		return 0
	}
	return s.kinds[k]
}

func (s *Store) sum(m map[Op]int64, op Op) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, o := range opNames {
		if op&o.op != 0 {
			n += m[o.op]
		}
	}
	return n
}

// plan is what happens to one call.
type plan struct {
	delay time.Duration
	fault *Rule // nil: none
}

// pick counts the call and chooses its faults. A call whose context is
// already done gets none: it goes to the inner store, which fails it with
// the context's error, as every store does.
func (s *Store) pick(ctx context.Context, op Op, key string) plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	var p plan
	if ctx.Err() != nil {
		return p
	}
	for i := range s.rules {
		r := &s.rules[i]
		if r.Ops&op == 0 || !strings.HasPrefix(key, r.Prefix) {
			continue
		}
		s.seen[i]++
		if r.Kind != Delay && p.fault != nil {
			continue // an earlier rule acts on this call
		}
		if r.Max > 0 && s.fired[i] >= r.Max {
			continue
		}
		fire := len(r.Calls) == 0 && r.Rate == 0
		if slices.Contains(r.Calls, s.seen[i]) {
			fire = true
		}
		if r.Rate > 0 && s.rng.Float64() < r.Rate {
			fire = true
		}
		if !fire {
			continue
		}
		s.fired[i]++
		s.faults[op]++
		s.kinds[r.Kind]++
		if r.Kind == Delay {
			p.delay += r.Latency
			continue
		}
		rc := *r
		p.fault = &rc
	}
	return p
}

// begin applies a call's delay; it fails when ctx ends first.
func begin(ctx context.Context, p plan) error {
	if p.delay <= 0 {
		return nil
	}
	return wait.Sleep(ctx, p.delay)
}

func (r *Rule) err() error {
	if r.Err != nil {
		return r.Err
	}
	return ErrTransient
}

// Put stores the body in the inner store unless a rule fails it.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	p := s.pick(ctx, Put, key)
	if err := begin(ctx, p); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f := p.fault
	switch {
	case f == nil:
		return s.inner.Put(ctx, key, r, opts)
	case f.Kind == FailAfter:
		if err := s.inner.Put(ctx, key, r, opts); err != nil {
			return err
		}
	case f.Kind == BreakBody:
		return s.inner.Put(ctx, key, &breaking{r: r, n: f.N, err: f.err()}, opts)
	case f.Kind == StallBody:
		return s.inner.Put(ctx, key, &breaking{r: r, n: f.N, stall: ctx}, opts)
	}
	return fmt.Errorf("put %s: %w", key, f.err())
}

// Get opens the object unless a rule fails it; BreakBody breaks its body.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.get(ctx, key, func(ctx context.Context) (io.ReadCloser, error) { return s.inner.Get(ctx, key) })
}

// GetRange is Get for part of the object. An inner store without GetRange
// is read from the start and the bytes before offset are skipped.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	return s.get(ctx, key, func(ctx context.Context) (io.ReadCloser, error) {
		if rg, ok := s.inner.(storage.RangeGetter); ok {
			return rg.GetRange(ctx, key, offset, length)
		}
		if offset < 0 {
			return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
		}
		rc, err := s.inner.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if _, err := io.CopyN(io.Discard, rc, offset); err != nil && err != io.EOF {
			rc.Close()
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
		if length < 0 {
			return rc, nil
		}
		return readCloser{io.LimitReader(rc, length), rc}, nil
	})
}

func (s *Store) get(ctx context.Context, key string, open func(context.Context) (io.ReadCloser, error)) (io.ReadCloser, error) {
	p := s.pick(ctx, Get, key)
	if err := begin(ctx, p); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f := p.fault
	if f != nil && f.Kind == Fail {
		return nil, fmt.Errorf("get %s: %w", key, f.err())
	}
	rc, err := open(ctx)
	if err != nil || f == nil {
		return rc, err
	}
	switch f.Kind {
	case BreakBody:
		berr := f.Err
		if berr == nil {
			berr = io.ErrUnexpectedEOF
		}
		return readCloser{&breaking{r: rc, n: f.N, err: berr}, rc}, nil
	case StallBody:
		return readCloser{&breaking{r: rc, n: f.N, stall: ctx}, rc}, nil
	}
	rc.Close()
	return nil, fmt.Errorf("get %s: %w", key, f.err())
}

// Stat returns the inner store's answer unless a rule fails it.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	p := s.pick(ctx, Stat, key)
	if err := begin(ctx, p); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	f := p.fault
	if f == nil {
		return s.inner.Stat(ctx, key)
	}
	if f.Kind == StallBody {
		<-ctx.Done()
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, ctx.Err())
	}
	if f.Kind == FailAfter {
		if info, err := s.inner.Stat(ctx, key); err != nil {
			return info, err
		}
	}
	return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, f.err())
}

// List lists the inner store unless a rule fails it; BreakBody fails it
// after N entries.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	p := s.pick(ctx, List, prefix)
	if err := begin(ctx, p); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	f := p.fault
	switch {
	case f == nil:
		return s.inner.List(ctx, prefix, fn)
	case f.Kind == FailAfter:
		if err := s.inner.List(ctx, prefix, fn); err != nil {
			return err
		}
	case f.Kind == BreakBody || f.Kind == StallBody:
		var n int64
		broken := fmt.Errorf("list %s: %w", prefix, f.err())
		err := s.inner.List(ctx, prefix, func(info storage.ObjectInfo) error {
			if n >= f.N {
				if f.Kind == StallBody {
					<-ctx.Done()
					broken = fmt.Errorf("list %s: %w", prefix, ctx.Err())
				}
				return broken
			}
			n++
			return fn(info)
		})
		if err != nil {
			return err
		}
		if n < f.N {
			return nil // the listing ended before the break
		}
		return broken
	}
	return fmt.Errorf("list %s: %w", prefix, f.err())
}

// Delete deletes the keys in the inner store unless a rule fails it; the
// rules match the first key.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	first := ""
	if len(keys) > 0 {
		first = keys[0]
	}
	p := s.pick(ctx, Delete, first)
	if err := begin(ctx, p); err != nil {
		return fmt.Errorf("delete %s: %w", first, err)
	}
	f := p.fault
	if f == nil {
		return s.inner.Delete(ctx, keys...)
	}
	if f.Kind == StallBody {
		<-ctx.Done()
		return fmt.Errorf("delete %s: %w", first, ctx.Err())
	}
	if f.Kind == FailAfter {
		if err := s.inner.Delete(ctx, keys...); err != nil {
			return err
		}
	}
	return fmt.Errorf("delete %s: %w", first, f.err())
}

// Close closes the inner store.
func (s *Store) Close() error { return s.inner.Close() }

// Local reports whether the inner store is local (storage.Local).
func (s *Store) Local() bool { return storage.IsLocal(s.inner) }

// breaking delivers n bytes of r, then fails with err, or, when stall is
// set, waits for stall to end and fails with its error.
type breaking struct {
	r     io.Reader
	n     int64
	err   error
	stall context.Context
}

// Read reads until n bytes are out, then fails.
func (b *breaking) Read(p []byte) (int, error) {
	if b.n <= 0 {
		if b.stall != nil {
			<-b.stall.Done()
			return 0, b.stall.Err()
		}
		return 0, b.err
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}
