package basebackup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/walrusdb/walrus/pg"
)

// readSettings say how a backup reads relation files.
type readSettings struct {
	// delta is the base of a delta backup; nil for a full backup.
	delta *deltaBase
	// verify checks page checksums (the cluster has data checksums).
	verify bool
	// blockSize and relSegSize are the cluster's BLCKSZ and RELSEG_SIZE.
	blockSize  int
	relSegSize uint32
	// startLSN is this backup's start: a page that fails verification
	// twice but carries a sound header with an LSN at or past it was being
	// written while read, and WAL replay restores it (TRAPS.md 22).
	startLSN pg.LSN
}

// pageReport names one page of a relation file.
type pageReport struct {
	path  string
	block uint32 // in the segment file
	lsn   pg.LSN
}

func (r pageReport) String() string { return fmt.Sprintf("%s block %d", r.path, r.block) }

// findings are what reading the relation files found, across workers.
type findings struct {
	mu sync.Mutex
	// checksum are the pages that failed verification twice.
	checksum []pageReport
	// newest is, per relation file, its sound page with the highest LSN,
	// to be compared with the end of the backup: no page read before
	// pg_backup_stop can be past the LSN it returns.
	newest []pageReport
}

// add records what reading the file at path found: the blocks that failed
// verification, and its newest page if that is past after (the backup's
// start: only such a page can be past the backup's end).
func (f *findings) add(path string, failed []uint32, t *lsnTracker, after pg.LSN) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range failed {
		f.checksum = append(f.checksum, pageReport{path: path, block: b})
	}
	if t != nil && t.seen && t.max > after {
		f.newest = append(f.newest, pageReport{path: path, block: t.block, lsn: t.max})
	}
}

// checksumError reports the pages that failed verification, or nil.
func (f *findings) checksumError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.checksum) == 0 {
		return nil
	}
	return fmt.Errorf("%d page(s) failed checksum verification twice: %s: the data files are damaged (pg_checksums and the server log tell more); a backup holds them as they are on disk only with --ignore-checksum-errors", len(f.checksum), listPages(f.checksum))
}

// checksumWarnings describes the failed pages, one line per file.
func (f *findings) checksumWarnings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.checksum) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%d page(s) failed checksum verification twice and were stored as read (--ignore-checksum-errors): %s", len(f.checksum), listPages(f.checksum))}
}

// pastWarnings reports the pages whose LSN is past end, the WAL position
// at the end of the backup: impossible for this cluster, so the page is
// damaged or came from elsewhere. Such pages were stored as read.
func (f *findings) pastWarnings(end pg.LSN) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.newest {
		if r.lsn > end {
			out = append(out, fmt.Sprintf("%s block %d has page LSN %s, past the server's WAL position %s at the end of the backup: the page is damaged or not of this cluster; it was stored as read", r.path, r.block, r.lsn, end))
		}
	}
	slices.Sort(out)
	return out
}

// listPages lists up to 20 pages, sorted.
func listPages(ps []pageReport) string {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b pageReport) int {
		if c := strings.Compare(a.path, b.path); c != 0 {
			return c
		}
		return int(int64(a.block) - int64(b.block))
	})
	var s []string
	for i, p := range ps {
		if i == 20 {
			s = append(s, fmt.Sprintf("and %d more", len(ps)-20))
			break
		}
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

// lsnTracker remembers the highest page LSN of one file among pages with
// a sound header.
type lsnTracker struct {
	bs    int
	seen  bool
	max   pg.LSN
	block uint32
}

// observe looks at page, block blk of the file.
func (t *lsnTracker) observe(page []byte, blk uint32) {
	if len(page) != t.bs || pg.PageIsNew(page) || pg.ValidatePageHeader(page, t.bs) != nil {
		return
	}
	if lsn := pg.ParsePageHeader(page).LSN; !t.seen || lsn > t.max {
		t.seen, t.max, t.block = true, lsn, blk
	}
}

// observeAll looks at every whole page of p, read at offset off.
func (t *lsnTracker) observeAll(p []byte, off int64) {
	if off%int64(t.bs) != 0 {
		return
	}
	first := off / int64(t.bs)
	for i := 0; (i+1)*t.bs <= len(p); i++ {
		t.observe(p[i*t.bs:(i+1)*t.bs], uint32(first+int64(i)))
	}
}

// pageChecker verifies the pages of a relation file stored whole as they
// stream past, as SelectPages does for increments (see package delta): a
// page PostgreSQL would reject on read (bad checksum, insane header, new
// but not zero) is read once more, and the second copy is stored and
// decides. It also tracks the file's highest page LSN.
type pageChecker struct {
	f          io.ReaderAt
	rf         pg.RelFile
	bs         int
	verify     bool
	firstBlock uint64 // fork block number of block 0 of this segment file
	segBlocks  uint64
	startLSN   pg.LSN
	lsn        lsnTracker
	failed     []uint32
}

func newPageChecker(f io.ReaderAt, rf pg.RelFile, rs readSettings) *pageChecker {
	seg := uint64(rs.relSegSize)
	if seg == 0 {
		seg = pg.DefaultRelSegSize
	}
	return &pageChecker{
		f: f, rf: rf, bs: rs.blockSize, verify: rs.verify,
		firstBlock: uint64(rf.Segment) * seg, segBlocks: seg,
		startLSN: rs.startLSN, lsn: lsnTracker{bs: rs.blockSize},
	}
}

// check examines the whole pages of chunk, which was read at offset off
// (a multiple of the block size); a page read again replaces the first
// copy in chunk.
func (c *pageChecker) check(chunk []byte, off int64) error {
	bs := c.bs
	if off%int64(bs) != 0 {
		return fmt.Errorf("check pages of %s: chunk at offset %d is not aligned to %d-byte pages (internal error)", c.rf.Path, off, bs)
	}
	first := off / int64(bs)
	for i := 0; (i+1)*bs <= len(chunk); i++ {
		page := chunk[i*bs : (i+1)*bs]
		blk := first + int64(i)
		if c.verify && uint64(blk) < c.segBlocks && !c.sound(page, uint32(blk)) {
			if err := readPage(c.f, page, blk*int64(bs)); err != nil {
				return fmt.Errorf("read %s block %d again after failed verification: %w", c.rf.Path, blk, err)
			}
			if !c.sound(page, uint32(blk)) && !c.tornInFlight(page) {
				c.failed = append(c.failed, uint32(blk))
			}
		}
		c.lsn.observe(page, uint32(blk))
	}
	return nil
}

// sound reports whether PostgreSQL would accept the page on read.
func (c *pageChecker) sound(page []byte, blk uint32) bool {
	if pg.PageIsZero(page) {
		return true
	}
	if pg.PageIsNew(page) || pg.ValidatePageHeader(page, c.bs) != nil {
		return false
	}
	return pg.PageChecksum(page, uint32(c.firstBlock)+blk) == pg.ParsePageHeader(page).Checksum
}

// tornInFlight reports whether a page that fails its checksum has a sound
// header and an LSN at or past the backup's start: written while read,
// and restored by replay from a full-page image.
func (c *pageChecker) tornInFlight(page []byte) bool {
	return !pg.PageIsNew(page) && pg.ValidatePageHeader(page, c.bs) == nil && pg.ParsePageHeader(page).LSN >= c.startLSN
}

// readPage fills page from f at off; bytes past the end of the file (it
// shrank) read as zeroes.
func readPage(f io.ReaderAt, page []byte, off int64) error {
	n, err := f.ReadAt(page, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(page[n:])
	return nil
}

// trackedFile is a relation file as SelectPages and WriteIncrement read
// it: reads are rate-limited, counted for progress (when count is set) and
// watched for the file's highest page LSN. With a cache, the pages
// SelectPages reads that it may select are kept (fill set), and
// WriteIncrement's reads of them are served from it (fill unset), so that
// such a page is read from the file once.
type trackedFile struct {
	ctx   context.Context
	f     *os.File
	u     *uploader
	count bool
	lsn   *lsnTracker
	cache *pageCache
	fill  bool
}

// ReadAt implements io.ReaderAt.
func (t *trackedFile) ReadAt(p []byte, off int64) (int, error) {
	if t.cache != nil && !t.fill && t.cache.get(p, off) {
		return len(p), nil
	}
	if err := t.u.limiter.wait(t.ctx, len(p)); err != nil {
		return 0, err
	}
	n, err := t.f.ReadAt(p, off)
	if t.count && n > 0 {
		t.u.prog.AddBytes(int64(n))
	}
	t.lsn.observeAll(p[:n], off)
	if t.cache != nil && t.fill {
		t.cache.offer(p[:n], off)
	}
	return n, err
}

// deltaCacheBytes bounds the pages a backup keeps between SelectPages and
// WriteIncrement, over all its workers. Pages past it are read again
// (normally from the page cache).
const deltaCacheBytes = 16 << 20

// pageCacheChunk is how many pages a pageCache allocates at once.
const pageCacheChunk = 64

// pageCache keeps the pages of one relation file that SelectPages may
// select: every page but those with a sound header and an LSN below the
// threshold (those are left out of a delta, unless their checksum fails:
// such pages are read again). Zero pages are remembered without their
// bytes. Its memory counts against the uploader's deltaCacheBytes; a page
// that does not fit is not kept. A page read again (SelectPages confirms
// a checksum failure) replaces the copy kept.
type pageCache struct {
	bs        int
	threshold pg.LSN
	budget    *atomic.Int64    // bytes kept by every cache of the backup
	index     map[uint32]int32 // block → slot; zeroSlot for an all-zero page
	chunks    [][]byte
	used      int // slots used
	full      bool
}

const zeroSlot = -1

func newPageCache(bs int, threshold pg.LSN, budget *atomic.Int64) *pageCache {
	return &pageCache{bs: bs, threshold: threshold, budget: budget, index: map[uint32]int32{}}
}

// offer looks at the whole pages of p, read at off, and keeps those a
// delta may store.
func (c *pageCache) offer(p []byte, off int64) {
	if off%int64(c.bs) != 0 {
		return
	}
	first := off / int64(c.bs)
	for i := 0; (i+1)*c.bs <= len(p); i++ {
		page := p[i*c.bs : (i+1)*c.bs]
		blk := uint32(first + int64(i))
		if slot, ok := c.index[blk]; ok && slot != zeroSlot {
			copy(c.slot(slot), page)
			continue
		}
		switch {
		case pg.PageIsZero(page):
			c.index[blk] = zeroSlot
			continue
		case !pg.PageIsNew(page) && pg.ValidatePageHeader(page, c.bs) == nil:
			if lsn := pg.ParsePageHeader(page).LSN; lsn != pg.InvalidLSN && lsn < c.threshold {
				delete(c.index, blk) // was zero when first read
				continue
			}
		}
		slot, ok := c.newSlot()
		if !ok {
			delete(c.index, blk)
			continue
		}
		copy(c.slot(slot), page)
		c.index[blk] = slot
	}
}

// newSlot reserves room for one more page, if the budget allows.
func (c *pageCache) newSlot() (int32, bool) {
	if c.full {
		return 0, false
	}
	if c.used%pageCacheChunk == 0 {
		size := int64(pageCacheChunk * c.bs)
		if c.budget.Add(size) > deltaCacheBytes {
			c.budget.Add(-size)
			c.full = true
			return 0, false
		}
		c.chunks = append(c.chunks, make([]byte, size))
	}
	c.used++
	return int32(c.used - 1), true
}

func (c *pageCache) slot(i int32) []byte {
	chunk := c.chunks[int(i)/pageCacheChunk]
	at := (int(i) % pageCacheChunk) * c.bs
	return chunk[at : at+c.bs]
}

// get fills p, one whole page at off, from the cache, and reports whether
// it could.
func (c *pageCache) get(p []byte, off int64) bool {
	if len(p) != c.bs || off%int64(c.bs) != 0 {
		return false
	}
	slot, ok := c.index[uint32(off/int64(c.bs))]
	switch {
	case !ok:
		return false
	case slot == zeroSlot:
		clear(p)
	default:
		copy(p, c.slot(slot))
	}
	return true
}

// release gives the cache's memory back to the budget.
func (c *pageCache) release() {
	c.budget.Add(-int64(len(c.chunks) * pageCacheChunk * c.bs))
	c.chunks, c.index = nil, nil
}
