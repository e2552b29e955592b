package delta

import (
	"errors"
	"fmt"
	"io"
)

// BlockSet is an explicit bitmap of block numbers: the blocks of a file
// already written while a chain is applied newest first (TRAPS.md 20). The
// zero value is an empty set; it grows to the largest block added.
type BlockSet struct {
	words []uint64
	n     int
}

// Add puts b in the set and reports whether it was absent.
func (s *BlockSet) Add(b uint32) bool {
	w := int(b / 64)
	if w >= len(s.words) {
		s.words = append(s.words, make([]uint64, w+1-len(s.words))...)
	}
	mask := uint64(1) << (b % 64)
	if s.words[w]&mask != 0 {
		return false
	}
	s.words[w] |= mask
	s.n++
	return true
}

// Contains reports whether b is in the set.
func (s *BlockSet) Contains(b uint32) bool {
	w := int(b / 64)
	return w < len(s.words) && s.words[w]&(uint64(1)<<(b%64)) != 0
}

// Len is the number of blocks in the set.
func (s *BlockSet) Len() int { return s.n }

// ApplyIncrement writes into dst each page of inc whose block is not in
// done and below ceil(limitSize/blocksize), at offset block*blocksize, and
// adds those blocks to done. limitSize is the file's size in the NEWEST
// backup of the chain: blocks past it belong to a file that shrank since
// and are skipped. Pages are written whole, the partial last block padded;
// the caller truncates the file to limitSize when the chain is applied.
// inc must be fresh (Next not called); it is read to the end, so that its
// trailing checksum is checked. It returns the pages written; on error some
// pages may have been written and the file is void.
func ApplyIncrement(dst io.WriterAt, inc *Reader, done *BlockSet, limitSize int64) (int, error) {
	if inc.next != 0 || inc.err != nil {
		return 0, fmt.Errorf("apply increment %s: reader already used", inc.name)
	}
	bs := int64(inc.inc.BlockSize)
	limit := blockCount(max(limitSize, 0), int(bs))
	written := 0
	for {
		b, page, err := inc.Next()
		if errors.Is(err, io.EOF) {
			return written, nil
		}
		if err != nil {
			return written, fmt.Errorf("apply increment: %w", err)
		}
		if int64(b) >= limit || done.Contains(b) {
			continue
		}
		if _, err := dst.WriteAt(page, int64(b)*bs); err != nil {
			return written, fmt.Errorf("apply increment %s: write block %d: %w", inc.name, b, err)
		}
		done.Add(b)
		written++
	}
}

// ApplyWhole writes into dst the blocks of a whole copy of the file, read
// from src, that are not in done and below ceil(limitSize/blockSize), and
// adds them to done. It is the last step of applying a chain: the copy
// stored whole at its root. A partial last block is written with its real
// length. src is read to its end, so that a checksumming reader below sees
// every byte. It returns the blocks written; name identifies src in errors.
func ApplyWhole(dst io.WriterAt, src io.Reader, name string, blockSize int, done *BlockSet, limitSize int64) (int, error) {
	if blockSize <= 0 {
		return 0, fmt.Errorf("apply whole copy %s: invalid block size %d", name, blockSize)
	}
	limit := blockCount(max(limitSize, 0), blockSize)
	if limit > maxBlockNumber+1 {
		return 0, fmt.Errorf("apply whole copy %s: size %d is too large for %d-byte blocks", name, limitSize, blockSize)
	}
	buf := make([]byte, blockSize)
	written := 0
	for b := int64(0); ; b++ {
		n, err := io.ReadFull(src, buf)
		if n > 0 && b < limit && !done.Contains(uint32(b)) {
			if _, werr := dst.WriteAt(buf[:n], b*int64(blockSize)); werr != nil {
				return written, fmt.Errorf("apply whole copy %s: write block %d: %w", name, b, werr)
			}
			done.Add(uint32(b))
			written++
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return written, nil
		case err != nil:
			return written, fmt.Errorf("apply whole copy %s: read block %d: %w", name, b, err)
		}
		if b >= limit {
			// Past the newest size: drain what is left, unread.
			if _, err := io.Copy(io.Discard, src); err != nil {
				return written, fmt.Errorf("apply whole copy %s: read: %w", name, err)
			}
			return written, nil
		}
	}
}
