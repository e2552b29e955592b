package delta

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/walrusdb/walrus/pg"
)

// maxBlockNumber is the largest block number PostgreSQL uses
// (MaxBlockNumber); InvalidBlockNumber is one more.
const maxBlockNumber = 0xFFFFFFFE

// readChunkBlocks is how many blocks SelectPages reads with one ReadAt.
const readChunkBlocks = 64

// SelectOptions says how SelectPages chooses the pages of one file.
type SelectOptions struct {
	// BlockSize is the cluster's block size; 0 means pg.DefaultBlockSize.
	// Read it from the cluster and pass it on.
	BlockSize int
	// Threshold is the START LSN of the base backup (TRAPS.md 16). Pages at
	// or past it are selected. 0 selects every page.
	Threshold pg.LSN
	// MaxLSN is an LSN no page can be past: the server's WAL insert
	// position sampled no earlier than the file is read (at backup start
	// or later; sampling later gives fewer false reports). Pages past it
	// are selected and reported in Selection.Suspicious. 0 disables the
	// check.
	MaxLSN pg.LSN
	// StartLSN is the START LSN of the backup being taken. A page that
	// fails its checksum twice but whose LSN is at or past it may be torn
	// in flight and is not reported (see the package documentation). 0
	// means Threshold.
	StartLSN pg.LSN
	// VerifyChecksums checks each page's checksum, as on a cluster with
	// data checksums.
	VerifyChecksums bool
	// RelFile is the file being read. Its Segment gives the block numbers
	// for checksums (Segment*RelSegSize + block) and its Path names the
	// file in errors. Only the main fork may be selected page by page.
	RelFile pg.RelFile
	// RelSegSize is the cluster's blocks per segment file (RELSEG_SIZE);
	// 0 means pg.DefaultRelSegSize.
	RelSegSize uint32
}

// Selection is the result of SelectPages for one file.
type Selection struct {
	// Name names the file in errors (SelectOptions.RelFile.Path).
	Name string
	// FileSize is the size of the file that was read; an increment records
	// it as the file's size in the new backup.
	FileSize int64
	// Blocks are the selected block numbers of the file, increasing.
	Blocks []uint32
	// Suspicious are the selected blocks whose page LSN is past MaxLSN.
	Suspicious []uint32
	// ChecksumFailures are the blocks whose page failed verification twice
	// and cannot be explained as torn by a concurrent write. They are also
	// in Blocks.
	ChecksumFailures []uint32
}

// SelectPages reads the first size bytes of the file r and chooses the
// blocks an increment must hold, by the rules of the package
// documentation: every page at or past opts.Threshold and every page whose
// LSN cannot be trusted. It reads the file once, in order, plus single
// blocks again to confirm checksum failures. Bytes missing because the file
// shrank during the read count as zeroes. Errors name the file and the
// block; a cancelled ctx stops the read.
func SelectPages(ctx context.Context, r io.ReaderAt, size int64, opts SelectOptions) (Selection, error) {
	name := opts.RelFile.Path
	if name == "" {
		name = "relation file"
	}
	bs := opts.BlockSize
	if bs == 0 {
		bs = pg.DefaultBlockSize
	}
	segBlocks := uint64(opts.RelSegSize)
	if segBlocks == 0 {
		segBlocks = pg.DefaultRelSegSize
	}
	switch {
	case !pg.ValidBlockSize(bs):
		return Selection{}, fmt.Errorf("select pages of %s: invalid block size %d", name, bs)
	case !opts.RelFile.IsDataFork():
		return Selection{}, fmt.Errorf("select pages of %s: the %s fork must be copied whole", name, opts.RelFile.Fork)
	case size < 0:
		return Selection{}, fmt.Errorf("select pages of %s: negative size %d", name, size)
	}
	nblocks := blockCount(size, bs)
	if nblocks > maxBlockNumber+1 {
		return Selection{}, fmt.Errorf("select pages of %s: size %d is too large for %d-byte blocks", name, size, bs)
	}
	first := uint64(opts.RelFile.Segment) * segBlocks
	if opts.VerifyChecksums && nblocks > 0 {
		if uint64(nblocks) > segBlocks {
			return Selection{}, fmt.Errorf("select pages of %s: %d blocks, more than a segment of %d", name, nblocks, segBlocks)
		}
		if first+uint64(nblocks)-1 > maxBlockNumber {
			return Selection{}, fmt.Errorf("select pages of %s: segment %d is past the largest relation size", name, opts.RelFile.Segment)
		}
	}
	s := selector{
		r: r, opts: opts, bs: bs, size: size, firstBlock: uint32(first),
		tornFrom: opts.StartLSN,
		sel:      Selection{Name: opts.RelFile.Path, FileSize: size},
	}
	if s.tornFrom == 0 {
		s.tornFrom = opts.Threshold
	}
	buf := make([]byte, min(nblocks, readChunkBlocks)*int64(bs))
	for start := int64(0); start < nblocks; start += readChunkBlocks {
		if err := ctx.Err(); err != nil {
			return Selection{}, fmt.Errorf("select pages of %s: block %d: %w", name, start, err)
		}
		n := min(nblocks-start, readChunkBlocks)
		chunk := buf[:n*int64(bs)]
		off := start * int64(bs)
		if err := readBlocks(r, chunk, off, size); err != nil {
			return Selection{}, fmt.Errorf("select pages of %s: read blocks %d-%d: %w", name, start, start+n-1, err)
		}
		for i := range n {
			blk := uint32(start + i)
			if err := s.consider(blk, chunk[i*int64(bs):(i+1)*int64(bs)]); err != nil {
				return Selection{}, fmt.Errorf("select pages of %s: block %d: %w", name, blk, err)
			}
		}
	}
	return s.sel, nil
}

// blockCount is the number of blocks, the last maybe partial, in size bytes.
func blockCount(size int64, bs int) int64 {
	return (size + int64(bs) - 1) / int64(bs)
}

// readBlocks fills p from r at off, reading no byte at or past size; what
// is not read (past size, or past the end of a file that shrank) is zeroed.
func readBlocks(r io.ReaderAt, p []byte, off, size int64) error {
	want := int64(len(p))
	if off+want > size {
		want = max(size-off, 0)
	}
	got := 0
	for int64(got) < want {
		n, err := r.ReadAt(p[got:want], off+int64(got))
		got += n
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrNoProgress
		}
	}
	clear(p[got:])
	return nil
}

// selector holds the state of one SelectPages call.
type selector struct {
	r          io.ReaderAt
	opts       SelectOptions
	bs         int
	size       int64
	firstBlock uint32 // block number in the fork of block 0 of this file
	tornFrom   pg.LSN
	sel        Selection
}

// verdict is what one look at a page found.
type verdict struct {
	zero, isNew, headerOK, checksumOK bool
}

// ok reports whether PostgreSQL would accept the page on read.
func (v verdict) ok() bool { return v.zero || (!v.isNew && v.headerOK && v.checksumOK) }

func (s *selector) examine(page []byte, blk uint32) verdict {
	v := verdict{zero: pg.PageIsZero(page), isNew: pg.PageIsNew(page), checksumOK: true}
	if v.zero || v.isNew {
		return v
	}
	v.headerOK = pg.ValidatePageHeader(page, s.bs) == nil
	if s.opts.VerifyChecksums {
		v.checksumOK = pg.PageChecksum(page, s.firstBlock+blk) == pg.ParsePageHeader(page).Checksum
	}
	return v
}

// consider decides whether block blk, read as page, is selected. page may be
// overwritten by a second read.
func (s *selector) consider(blk uint32, page []byte) error {
	if (int64(blk)+1)*int64(s.bs) > s.size {
		// The partial last block: always kept, never checked.
		s.sel.Blocks = append(s.sel.Blocks, blk)
		return nil
	}
	v := s.examine(page, blk)
	if s.opts.VerifyChecksums && !v.ok() {
		// Maybe read while the server wrote it: look once more.
		if err := readBlocks(s.r, page, int64(blk)*int64(s.bs), s.size); err != nil {
			return fmt.Errorf("read again after failed verification: %w", err)
		}
		v = s.examine(page, blk)
	}
	h := pg.ParsePageHeader(page)
	switch {
	case v.zero || v.isNew:
		if !v.zero && s.opts.VerifyChecksums {
			// New but not zero: PostgreSQL rejects it.
			s.sel.ChecksumFailures = append(s.sel.ChecksumFailures, blk)
		}
	case !v.headerOK:
		if s.opts.VerifyChecksums {
			s.sel.ChecksumFailures = append(s.sel.ChecksumFailures, blk)
		}
	default:
		if !v.checksumOK && h.LSN < s.tornFrom {
			s.sel.ChecksumFailures = append(s.sel.ChecksumFailures, blk)
		}
		if s.opts.MaxLSN != 0 && h.LSN > s.opts.MaxLSN {
			s.sel.Suspicious = append(s.sel.Suspicious, blk)
		} else if v.checksumOK && h.LSN != pg.InvalidLSN && h.LSN < s.opts.Threshold {
			return nil // sound and unchanged since the base: left out
		}
	}
	s.sel.Blocks = append(s.sel.Blocks, blk)
	return nil
}
