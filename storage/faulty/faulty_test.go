package faulty_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/storagetest"
)

// Without rules the wrapper is a faithful store.
func TestConformanceWithoutFaults(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Store { return faulty.New(mem.New(), faulty.Script{}) })
}

func put(t *testing.T, st storage.Store, key, data string) error {
	t.Helper()
	return st.Put(t.Context(), key, strings.NewReader(data), storage.PutOptions{Size: -1})
}

func TestCallsPrefixAndMax(t *testing.T) {
	t.Parallel()
	m := mem.New()
	f := faulty.New(m, faulty.Script{Rules: []faulty.Rule{
		{Ops: faulty.Stat, Prefix: "wal/", Calls: []int{2, 4}},
		{Ops: faulty.Delete, Max: 1},
	}})
	if err := put(t, m, "wal/a", "a"); err != nil {
		t.Fatal(err)
	}
	var failed []int
	for i := 1; i <= 5; i++ {
		if _, err := f.Stat(t.Context(), "other"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat outside the prefix = %v", err)
		}
		if _, err := f.Stat(t.Context(), "wal/a"); err != nil {
			if !errors.Is(err, faulty.ErrTransient) || !strings.Contains(err.Error(), "stat wal/a") {
				t.Fatalf("injected error %v should be ErrTransient naming the call", err)
			}
			failed = append(failed, i)
		}
	}
	if len(failed) != 2 || failed[0] != 2 || failed[1] != 4 {
		t.Fatalf("Stat failed on calls %v, want [2 4]", failed)
	}
	if err := f.Delete(t.Context(), "x"); err == nil {
		t.Fatal("first Delete not failed")
	}
	if err := f.Delete(t.Context(), "x"); err != nil {
		t.Fatalf("second Delete failed although Max is 1: %v", err)
	}
	if f.Calls(faulty.Stat) != 10 || f.Faults(faulty.Stat) != 2 || f.Faults(faulty.All) != 3 || f.FaultsOf(faulty.Fail) != 3 {
		t.Fatalf("counters: %d stat calls, %d stat faults, %d faults, %d fails", f.Calls(faulty.Stat), f.Faults(faulty.Stat), f.Faults(faulty.All), f.FaultsOf(faulty.Fail))
	}
}

func TestRateIsSeeded(t *testing.T) {
	t.Parallel()
	outcomes := func(seed uint64) string {
		f := faulty.New(mem.New(), faulty.Script{Seed: seed, Rules: []faulty.Rule{{Ops: faulty.All, Rate: 0.3}}})
		var b strings.Builder
		for range 200 {
			if _, err := f.Stat(t.Context(), "k"); errors.Is(err, faulty.ErrTransient) {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b, c := outcomes(1), outcomes(1), outcomes(2)
	if a != b {
		t.Fatal("the same seed gave different faults")
	}
	if a == c {
		t.Fatal("different seeds gave the same faults")
	}
	if n := strings.Count(a, "x"); n < 30 || n > 90 {
		t.Fatalf("%d faults in 200 calls at rate 0.3", n)
	}
}

func TestKinds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	m := mem.New()
	f := faulty.New(m, faulty.Script{Rules: []faulty.Rule{
		{Ops: faulty.Put, Prefix: "after/", Kind: faulty.FailAfter, Err: faulty.ErrPermanent},
		{Ops: faulty.Put, Prefix: "broken/", Kind: faulty.BreakBody, N: 3},
		{Ops: faulty.Get, Prefix: "short/", Kind: faulty.BreakBody, N: 4},
		{Ops: faulty.List, Prefix: "short/", Kind: faulty.BreakBody, N: 1},
		{Ops: faulty.Get, Prefix: "slow/", Kind: faulty.Delay, Latency: time.Millisecond},
	}})
	// FailAfter: the put took effect, the caller got an error.
	if err := put(t, f, "after/x", "stored"); !errors.Is(err, faulty.ErrPermanent) {
		t.Fatalf("FailAfter Put = %v", err)
	}
	if _, err := m.Stat(ctx, "after/x"); err != nil {
		t.Fatalf("FailAfter Put did not take effect: %v", err)
	}
	// BreakBody on Put: the inner store sees its body fail and stores
	// nothing.
	if err := put(t, f, "broken/x", "0123456789"); !errors.Is(err, faulty.ErrTransient) {
		t.Fatalf("BreakBody Put = %v", err)
	}
	if _, err := m.Stat(ctx, "broken/x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("BreakBody Put stored something: %v", err)
	}
	// BreakBody on Get: a short read.
	for _, k := range []string{"short/a", "short/b", "slow/a"} {
		if err := put(t, m, k, "0123456789"); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := f.Get(ctx, "short/a")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if string(got) != "0123" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("BreakBody Get read %q, %v; want \"0123\", io.ErrUnexpectedEOF", got, err)
	}
	var listed []string
	err = f.List(ctx, "short/", func(info storage.ObjectInfo) error {
		listed = append(listed, info.Key)
		return nil
	})
	if len(listed) != 1 || !errors.Is(err, faulty.ErrTransient) {
		t.Fatalf("BreakBody List gave %q, %v; want one entry and the error", listed, err)
	}
	rc, err = f.GetRange(ctx, "slow/a", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rc)
	rc.Close()
	if string(got) != "234" || err != nil {
		t.Fatalf("delayed GetRange = %q, %v", got, err)
	}
	if f.FaultsOf(faulty.Delay) != 1 || f.FaultsOf(faulty.BreakBody) != 3 || f.FaultsOf(faulty.FailAfter) != 1 {
		t.Fatalf("counters by kind: delay %d, break %d, fail-after %d", f.FaultsOf(faulty.Delay), f.FaultsOf(faulty.BreakBody), f.FaultsOf(faulty.FailAfter))
	}
}
