package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/retry"
	"github.com/walrusdb/walrus/storage/storagetest"
)

// fast are retry options for tests: real backoff, in milliseconds.
var fast = retry.Options{MaxAttempts: 5, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}

// setup returns a retrying store over a faulty one over memory.
func setup(t *testing.T, opts retry.Options, rules ...faulty.Rule) (*retry.Store, *faulty.Store, *mem.Store) {
	t.Helper()
	m := mem.New()
	f := faulty.New(m, faulty.Script{Seed: 1, Rules: rules})
	return retry.New(f, opts), f, m
}

func randomData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func readAll(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	rc, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%s): read: %v", key, err)
	}
	return b
}

func wantContent(t *testing.T, st storage.Store, key string, want []byte) {
	t.Helper()
	if got := readAll(t, st, key); !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes, want the %d bytes put (equal: %v)", key, len(got), len(want), bytes.Equal(got, want))
	}
}

func wantAbsent(t *testing.T, st storage.Store, key string) {
	t.Helper()
	if _, err := st.Stat(t.Context(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%s) = %v, want ErrNotFound: a failed put must store nothing", key, err)
	}
}

// oneShot hides every method of r but Read: a body that cannot be re-read.
type oneShot struct{ r io.Reader }

func (o *oneShot) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestConformance runs the storage suite through the retry layer over a
// store that fails about one call in ten, before or after taking effect,
// and breaks one Get body in ten.
func TestConformance(t *testing.T) {
	t.Parallel()
	opts := fast
	opts.MaxAttempts = 12 // so that no run of bad luck fails the suite
	var injected atomic.Int64
	t.Cleanup(func() {
		if injected.Load() == 0 {
			t.Error("no fault was injected")
		}
	})
	var seed atomic.Uint64
	storagetest.Run(t, func(t *testing.T) storage.Store {
		f := faulty.New(mem.New(), faulty.Script{Seed: seed.Add(1), Rules: []faulty.Rule{
			// Fail before the body is touched: any body can be retried.
			{Ops: faulty.Put, Kind: faulty.Fail, Rate: 0.1},
			{Ops: faulty.Get | faulty.Stat | faulty.List | faulty.Delete, Kind: faulty.Fail, Rate: 0.05},
			{Ops: faulty.Get | faulty.Stat | faulty.List | faulty.Delete, Kind: faulty.FailAfter, Rate: 0.05},
			{Ops: faulty.Get, Kind: faulty.BreakBody, N: 7, Rate: 0.1},
			{Ops: faulty.List, Kind: faulty.BreakBody, N: 3, Rate: 0.1},
		}})
		t.Cleanup(func() { injected.Add(f.Faults(faulty.All)) })
		return retry.New(f, opts)
	})
}

func TestTransientPutIsRetriedWithTheWholeBody(t *testing.T) {
	t.Parallel()
	data := randomData(1, 100_000)
	for _, tc := range []struct {
		name string
		rule faulty.Rule
		body func() io.Reader
	}{
		{"fail before reading, seekable", faulty.Rule{Kind: faulty.Fail, Calls: []int{1, 2}}, func() io.Reader { return bytes.NewReader(data) }},
		{"fail before reading, one-shot", faulty.Rule{Kind: faulty.Fail, Calls: []int{1, 2}}, func() io.Reader { return &oneShot{bytes.NewReader(data)} }},
		{"break mid-body, seekable", faulty.Rule{Kind: faulty.BreakBody, N: 4097, Calls: []int{1, 2}}, func() io.Reader { return bytes.NewReader(data) }},
		{"answer lost, seekable", faulty.Rule{Kind: faulty.FailAfter, Calls: []int{1, 2}}, func() io.Reader { return bytes.NewReader(data) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.rule.Ops = faulty.Put
			st, f, m := setup(t, fast, tc.rule)
			if err := st.Put(t.Context(), "k", tc.body(), storage.PutOptions{Size: int64(len(data))}); err != nil {
				t.Fatalf("Put: %v", err)
			}
			wantContent(t, m, "k", data)
			if n := f.Calls(faulty.Put); n != 3 {
				t.Errorf("inner Put called %d times, want 3 (two faults, then success)", n)
			}
			if st.Retries() != 2 {
				t.Errorf("Retries() = %d, want 2", st.Retries())
			}
		})
	}
}

// A seekable body that does not start at offset 0 is rewound to where it
// started, not to 0.
func TestSeekableBodyRewindsToItsStart(t *testing.T) {
	t.Parallel()
	st, _, m := setup(t, fast, faulty.Rule{Ops: faulty.Put, Kind: faulty.BreakBody, N: 10, Calls: []int{1}})
	r := strings.NewReader("skipped|the body")
	if _, err := r.Seek(8, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), "k", r, storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	wantContent(t, m, "k", []byte("the body"))
}

// reopener is a one-shot body that can start over.
type reopener struct {
	data    []byte
	r       io.Reader
	reopens int
}

func (b *reopener) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *reopener) Reopen() (io.Reader, error) {
	b.reopens++
	return &oneShot{bytes.NewReader(b.data)}, nil
}

func TestReopenerBodyIsReopened(t *testing.T) {
	t.Parallel()
	data := randomData(2, 50_000)
	st, _, m := setup(t, fast, faulty.Rule{Ops: faulty.Put, Kind: faulty.BreakBody, N: 1000, Calls: []int{1, 2}})
	body := &reopener{data: data, r: bytes.NewReader(data)}
	if err := st.Put(t.Context(), "k", body, storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	wantContent(t, m, "k", data)
	if body.reopens != 2 {
		t.Errorf("body reopened %d times, want 2", body.reopens)
	}
}

// TRAPS.md 3: a body that cannot be re-read and was partly consumed is not
// retried, and nothing is stored.
func TestConsumedOneShotBodyIsNotRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		rule faulty.Rule
	}{
		{"connection broke mid-body", faulty.Rule{Ops: faulty.Put, Kind: faulty.BreakBody, N: 1000, Calls: []int{1}}},
		{"answer lost", faulty.Rule{Ops: faulty.Put, Kind: faulty.FailAfter, Calls: []int{1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, f, m := setup(t, fast, tc.rule)
			err := st.Put(t.Context(), "wal/seg", &oneShot{bytes.NewReader(randomData(3, 10_000))}, storage.PutOptions{Size: -1})
			if err == nil {
				t.Fatal("Put succeeded although its body could not be sent again")
			}
			if !strings.Contains(err.Error(), "wal/seg") || !strings.Contains(err.Error(), "cannot be read again") {
				t.Errorf("error %q should name the key and say why it was not retried", err)
			}
			if n := f.Calls(faulty.Put); n != 1 {
				t.Errorf("inner Put called %d times, want 1", n)
			}
			if tc.rule.Kind == faulty.BreakBody {
				wantAbsent(t, m, "wal/seg")
			}
		})
	}
}

// A failure of the caller's body is the caller's: never retried.
func TestBodyFailureIsNotRetried(t *testing.T) {
	t.Parallel()
	st, f, m := setup(t, fast)
	errBody := errors.New("disk read failed")
	body := io.MultiReader(strings.NewReader("some bytes"), iotestErrReader{errBody})
	if err := st.Put(t.Context(), "k", body, storage.PutOptions{Size: -1}); !errors.Is(err, errBody) {
		t.Fatalf("Put = %v, want the body's error", err)
	}
	if n := f.Calls(faulty.Put); n != 1 {
		t.Errorf("inner Put called %d times, want 1", n)
	}
	wantAbsent(t, m, "k")
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestPermanentErrorsFailAtOnce(t *testing.T) {
	t.Parallel()
	st, f, _ := setup(t, fast, faulty.Rule{Ops: faulty.All, Kind: faulty.Fail, Err: faulty.ErrPermanent})
	ctx := t.Context()
	errs := map[string]error{
		"put": st.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{Size: -1}),
		"list": st.List(ctx, "", func(storage.ObjectInfo) error {
			return nil
		}),
		"delete": st.Delete(ctx, "k"),
	}
	_, errs["stat"] = st.Stat(ctx, "k")
	_, errs["get"] = st.Get(ctx, "k")
	for op, err := range errs {
		if !errors.Is(err, faulty.ErrPermanent) {
			t.Errorf("%s = %v, want the permanent error", op, err)
		}
	}
	for _, op := range []faulty.Op{faulty.Put, faulty.Get, faulty.Stat, faulty.List, faulty.Delete} {
		if n := f.Calls(op); n != 1 {
			t.Errorf("inner %s called %d times, want 1", op, n)
		}
	}
	if st.Retries() != 0 {
		t.Errorf("Retries() = %d, want 0", st.Retries())
	}
}

func TestNotFoundAndExistsAreNeverRetried(t *testing.T) {
	t.Parallel()
	st, f, m := setup(t, fast)
	ctx := t.Context()
	if _, err := st.Stat(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat = %v, want ErrNotFound", err)
	}
	if _, err := st.Get(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	if _, err := st.GetRange(ctx, "missing", 5, 10); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetRange = %v, want ErrNotFound", err)
	}
	if n := f.Calls(faulty.Stat | faulty.Get); n != 3 {
		t.Errorf("inner Stat and Get called %d times, want 3", n)
	}
	if err := m.Put(ctx, "taken", strings.NewReader("old"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	err := st.Put(ctx, "taken", strings.NewReader("new"), storage.PutOptions{Size: -1, IfNotExists: true})
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("Put IfNotExists over another object = %v, want ErrExists", err)
	}
	if n := f.Calls(faulty.Put); n != 1 {
		t.Errorf("inner Put called %d times, want 1", n)
	}
	wantContent(t, m, "taken", []byte("old"))
}

// A create-only Put whose first attempt stored the object but lost its
// answer succeeds: the object is its own. One whose body differs does not.
func TestCreateOnlyPutWithLostAnswer(t *testing.T) {
	t.Parallel()
	md := map[string]string{"sha256": "abc"}
	st, f, m := setup(t, fast, faulty.Rule{Ops: faulty.Put, Kind: faulty.FailAfter, Calls: []int{1}})
	ctx := t.Context()
	data := randomData(4, 200_000)
	if err := st.Put(ctx, "rp/x.json", bytes.NewReader(data), storage.PutOptions{Size: int64(len(data)), IfNotExists: true, Metadata: md}); err != nil {
		t.Fatalf("Put IfNotExists whose answer was lost: %v", err)
	}
	wantContent(t, m, "rp/x.json", data)
	if n := f.Calls(faulty.Put); n != 2 {
		t.Errorf("inner Put called %d times, want 2", n)
	}
	// Same key, other content or metadata: ErrExists, untouched.
	other := bytes.Clone(data)
	other[len(other)-1] ^= 1
	for _, tc := range []struct {
		body []byte
		md   map[string]string
	}{{other, md}, {data, map[string]string{"sha256": "abd"}}, {data[:len(data)-1], md}} {
		err := st.Put(ctx, "rp/x.json", bytes.NewReader(tc.body), storage.PutOptions{Size: -1, IfNotExists: true, Metadata: tc.md})
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("Put IfNotExists of different content = %v, want ErrExists", err)
		}
	}
	wantContent(t, m, "rp/x.json", data)
}

func TestGetResumesBrokenTransfers(t *testing.T) {
	t.Parallel()
	data := randomData(5, 300_000)
	// Every one of the first 8 transfers breaks after 10,000 bytes: more
	// failures than MaxAttempts, but each makes progress.
	st, f, m := setup(t, fast, faulty.Rule{Ops: faulty.Get, Kind: faulty.BreakBody, N: 10_000, Calls: []int{1, 2, 3, 4, 5, 6, 7, 8}})
	if err := m.Put(t.Context(), "big", bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	wantContent(t, st, "big", data)
	if n := f.Calls(faulty.Get); n != 9 {
		t.Errorf("inner Get called %d times, want 9", n)
	}
	// A range, broken inside it.
	rc, err := st.GetRange(t.Context(), "big", 123_456, 50_000)
	if err != nil {
		t.Fatal(err)
	}
	f2 := faulty.New(m, faulty.Script{Rules: []faulty.Rule{{Ops: faulty.Get, Kind: faulty.BreakBody, N: 999, Calls: []int{1, 2}}}})
	rg := retry.New(f2, fast)
	rc2, err := rg.GetRange(t.Context(), "big", 123_456, 50_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []io.ReadCloser{rc, rc2} {
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[123_456:173_456]) {
			t.Fatalf("GetRange returned %d bytes, want the 50000 bytes of the range", len(got))
		}
	}
}

// A transfer that keeps breaking without progress gives up with the
// short-read error, never a silent short object.
func TestGetGivesUpWithoutProgress(t *testing.T) {
	t.Parallel()
	st, f, m := setup(t, fast, faulty.Rule{Ops: faulty.Get, Kind: faulty.BreakBody, N: 0})
	if err := m.Put(t.Context(), "obj", strings.NewReader("content"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(t.Context(), "obj")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "obj") {
		t.Fatalf("read = %v, want io.ErrUnexpectedEOF naming the key", err)
	}
	if n := f.Calls(faulty.Get); n != int64(fast.MaxAttempts) {
		t.Errorf("inner Get called %d times, want %d", n, fast.MaxAttempts)
	}
}

func TestListResumesAfterTheLastKey(t *testing.T) {
	t.Parallel()
	st, f, m := setup(t, fast, faulty.Rule{Ops: faulty.List, Kind: faulty.BreakBody, N: 2, Calls: []int{1}},
		faulty.Rule{Ops: faulty.List, Kind: faulty.Fail, Calls: []int{2}})
	var want []string
	for i := range 7 {
		k := fmt.Sprintf("wal/%02d", i)
		want = append(want, k)
		if err := m.Put(t.Context(), k, strings.NewReader(k), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := st.List(t.Context(), "wal/", func(info storage.ObjectInfo) error {
		got = append(got, info.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("fn saw %q, want each key once in order: %q", got, want)
	}
	if n := f.Calls(faulty.List); n != 3 {
		t.Errorf("inner List called %d times, want 3", n)
	}
	// The callback's error is returned as is, never retried.
	stop := errors.New("stop")
	calls := f.Calls(faulty.List)
	if err := st.List(t.Context(), "wal/", func(storage.ObjectInfo) error { return stop }); err != stop {
		t.Fatalf("List = %v, want the callback's error itself", err)
	}
	if n := f.Calls(faulty.List) - calls; n != 1 {
		t.Errorf("inner List called %d times after a callback error, want 1", n)
	}
}

func TestDeleteRetriesByBatch(t *testing.T) {
	t.Parallel()
	st, f, m := setup(t, fast, faulty.Rule{Ops: faulty.Delete, Kind: faulty.FailAfter, Calls: []int{2}})
	var keys []string
	for i := range 2500 {
		k := fmt.Sprintf("b/%04d", i)
		keys = append(keys, k)
		if err := m.Put(t.Context(), k, strings.NewReader("x"), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Delete(t.Context(), keys...); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(faulty.Delete); n != 4 {
		t.Errorf("inner Delete called %d times, want 4 (3 batches, one retried)", n)
	}
	if err := m.List(t.Context(), "", func(info storage.ObjectInfo) error {
		return fmt.Errorf("%s is left", info.Key)
	}); err != nil {
		t.Fatal(err)
	}
	// A bad key anywhere is refused before anything is deleted.
	if err := m.Put(t.Context(), "keep", strings.NewReader("x"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(t.Context(), "keep", "../bad"); err == nil {
		t.Fatal("Delete with an invalid key succeeded")
	}
	wantContent(t, m, "keep", []byte("x"))
}

// Cancelling the context stops the retries: the wait between attempts,
// here an hour, ends with it.
func TestCancellationStopsRetries(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var retries atomic.Int32
	opts := retry.Options{MaxAttempts: 100, BaseDelay: time.Hour, MaxDelay: time.Hour, OnRetry: func(error, int, time.Duration) {
		retries.Add(1)
		cancel()
	}}
	st, f, _ := setup(t, opts, faulty.Rule{Ops: faulty.All, Kind: faulty.Fail})
	_, err := st.Stat(ctx, "k")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, faulty.ErrTransient) {
		t.Fatalf("Stat = %v, want context.Canceled and the last failure", err)
	}
	if errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat = %v claims the object is absent", err)
	}
	if n := f.Calls(faulty.Stat); n != 1 || retries.Load() != 1 {
		t.Errorf("inner Stat called %d times, %d retries; want 1 and 1", n, retries.Load())
	}
	// An already cancelled context makes no attempt worth retrying.
	if err := st.Put(ctx, "k", strings.NewReader("x"), storage.PutOptions{Size: -1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v", err)
	}
	if n := f.Calls(faulty.Put); n > 1 {
		t.Errorf("inner Put called %d times with a cancelled context", n)
	}
}

// CallTimeout: a stalled call is abandoned and retried; a slow caller is
// not timed.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	opts := fast
	opts.CallTimeout = 20 * time.Millisecond
	st, f, m := setup(t, opts,
		faulty.Rule{Ops: faulty.Stat | faulty.Delete, Kind: faulty.StallBody, Calls: []int{1}},
		faulty.Rule{Ops: faulty.Get, Kind: faulty.StallBody, N: 5000, Calls: []int{1}},
		faulty.Rule{Ops: faulty.List, Kind: faulty.StallBody, N: 1, Calls: []int{1}},
	)
	ctx := t.Context()
	data := randomData(6, 20_000)
	for _, k := range []string{"a", "b"} {
		if err := m.Put(ctx, k, bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := st.Stat(ctx, "a"); err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Stat after a stalled attempt = %+v, %v", info, err)
	}
	wantContent(t, st, "a", data)
	var keys []string
	if err := st.List(ctx, "", func(info storage.ObjectInfo) error {
		keys = append(keys, info.Key)
		return nil
	}); err != nil || !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("List after a stalled attempt = %q, %v", keys, err)
	}
	for _, op := range []faulty.Op{faulty.Stat, faulty.Get, faulty.List} {
		if n := f.Calls(op); n != 2 {
			t.Errorf("inner %s called %d times, want 2 (a stalled attempt, then success)", op, n)
		}
	}

	// The time a caller spends between Reads or in List's callback is its
	// own: no retry however long it takes.
	before := f.Calls(faulty.Get | faulty.List)
	rc, err := st.Get(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	half := make([]byte, len(data)/2)
	if _, err := io.ReadFull(rc, half); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * opts.CallTimeout)
	rest, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(append(half, rest...), data) {
		t.Fatalf("slow reader got %d bytes, %v", len(half)+len(rest), err)
	}
	if err := st.List(ctx, "", func(storage.ObjectInfo) error {
		time.Sleep(2 * opts.CallTimeout)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(faulty.Get|faulty.List) - before; n != 2 {
		t.Errorf("a slow caller made %d inner calls, want 2 (no retries)", n)
	}
	if err := st.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wantAbsent(t, m, "a")
}

func TestDo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	calls := 0
	err := retry.Do(ctx, fast, func(context.Context) error {
		calls++
		if calls < 3 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Do = %v after %d calls, want success after 3", err, calls)
	}

	calls = 0
	err = retry.Do(ctx, fast, func(context.Context) error { calls++; return io.ErrUnexpectedEOF })
	if !errors.Is(err, io.ErrUnexpectedEOF) || calls != fast.MaxAttempts || !strings.Contains(err.Error(), "gave up after 5 attempts") {
		t.Fatalf("Do = %v after %d calls, want the error after %d attempts, saying so", err, calls, fast.MaxAttempts)
	}

	calls = 0
	errPerm := errors.New("bad request")
	err = retry.Do(ctx, fast, func(context.Context) error { calls++; return retry.Permanent(io.ErrUnexpectedEOF) })
	if err != io.ErrUnexpectedEOF || calls != 1 {
		t.Fatalf("Do with a Permanent error = %v after %d calls, want the bare error after 1", err, calls)
	}
	calls = 0
	if err := retry.Do(ctx, fast, func(context.Context) error { calls++; return errPerm }); err != errPerm || calls != 1 {
		t.Fatalf("Do with an unknown error = %v after %d calls, want it after 1", err, calls)
	}

	// A deadline error while ctx is live is a lower layer's timeout.
	calls = 0
	err = retry.Do(ctx, fast, func(context.Context) error {
		calls++
		if calls == 1 {
			return fmt.Errorf("request: %w", context.DeadlineExceeded)
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("Do = %v after %d calls, want a retried timeout", err, calls)
	}
}

func TestDelayGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	o := retry.Options{BaseDelay: 100 * time.Millisecond, MaxDelay: 5 * time.Second}
	for failures, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 7: 5 * time.Second, 60: 5 * time.Second} {
		for range 20 {
			if d := o.Delay(failures); d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", failures, d, want/2, want)
			}
		}
	}
}
