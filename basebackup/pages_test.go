package basebackup

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"
)

// The page cache between SelectPages and WriteIncrement keeps exactly the
// pages a delta may store, serves them as first read (or as read again),
// stays within its budget, and gives the budget back.
func TestPageCache(t *testing.T) {
	t.Parallel()
	var budget atomic.Int64
	c := newPageCache(testBS, delta1Start, &budget)
	zero := make([]byte, testBS)
	old := page(fullStart, 1, 1)      // unchanged since the base: not kept
	recent := page(delta1Start, 2, 2) // changed: kept
	broken := slices.Clone(recent)
	broken[12] = 0xff // bad header: kept
	c.offer(slices.Concat(zero, old, recent, broken), 0)

	got := make([]byte, testBS)
	for blk, want := range map[int][]byte{0: zero, 2: recent, 3: broken} {
		clear(got)
		got[0] = 0x55
		if !c.get(got, int64(blk)*testBS) || !bytes.Equal(got, want) {
			t.Fatalf("block %d: not served, or served wrong bytes", blk)
		}
	}
	if c.get(got, 1*testBS) {
		t.Fatal("an unchanged page was kept")
	}
	if c.get(got, 9*testBS) || c.get(got[:100], 2*testBS) || c.get(got, 2*testBS+1) {
		t.Fatal("served a page it never saw, or a read that is not one whole page")
	}
	// Read again (a checksum failure confirmed): the second copy wins.
	again := page(delta2Start, 2, 9)
	c.offer(again, 2*testBS)
	if !c.get(got, 2*testBS) || !bytes.Equal(got, again) {
		t.Fatal("a page read again is not served as read again")
	}
	// A zero page read again as a changed one is kept with its bytes.
	c.offer(recent, 0)
	if !c.get(got, 0) || !bytes.Equal(got, recent) {
		t.Fatal("a zero page read again as a changed page is not served as such")
	}
	c.release()
	if budget.Load() != 0 {
		t.Fatalf("budget holds %d bytes after release", budget.Load())
	}

	// Past the budget, pages are not kept (WriteIncrement reads them).
	budget.Store(deltaCacheBytes)
	c = newPageCache(testBS, delta1Start, &budget)
	c.offer(recent, 0)
	if c.get(got, 0) {
		t.Fatal("a page was kept beyond the budget")
	}
	c.release()
	if budget.Load() != deltaCacheBytes {
		t.Fatalf("budget changed to %d by a cache that kept nothing", budget.Load())
	}
}
