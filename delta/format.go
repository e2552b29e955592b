package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/walrusdb/walrus/pg"
)

// Magic starts every increment.
const Magic = "WLRSINC1"

// FormatVersion is the increment format version this package writes and the
// only one it reads.
const FormatVersion = 1

// fixedHeaderSize is the size of the header before the block list.
const fixedHeaderSize = 28

// listChunk is how many block numbers the reader takes at a time, so that
// memory grows with the input actually present, never with a count field.
const listChunk = 4096

// ErrCorrupt is matched (errors.Is) by every error that reports a malformed
// increment, as opposed to an error of the underlying reader.
var ErrCorrupt = errors.New("corrupt increment")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// formatError reports a malformed increment.
type formatError struct{ name, msg string }

func (e *formatError) Error() string        { return "read increment " + e.name + ": " + e.msg }
func (e *formatError) Is(target error) bool { return target == ErrCorrupt }

func corruptf(name, format string, args ...any) error {
	return &formatError{name: name, msg: fmt.Sprintf(format, args...)}
}

// Increment is the header of an increment: what it says about the file.
type Increment struct {
	// BlockSize is the block size of the file's cluster.
	BlockSize int
	// FileSize is the file's size in the backup that stored the increment.
	FileSize int64
	// Blocks are the block numbers present, strictly increasing, each
	// below ceil(FileSize/BlockSize).
	Blocks []uint32
}

// WriteIncrement writes to w the increment for sel: its header and block
// list, then each selected page read again from r (the file SelectPages
// read), then the trailing checksum. It holds one page in memory. A page that
// changed since SelectPages is written as it is now; bytes at or past
// sel.FileSize, or missing because the file shrank, are written as zeroes.
// It returns the bytes written. Errors name the file (sel.Name) and block.
func WriteIncrement(w io.Writer, r io.ReaderAt, sel Selection, blockSize int) (int64, error) {
	name := sel.Name
	if name == "" {
		name = "relation file"
	}
	if !pg.ValidBlockSize(blockSize) {
		return 0, fmt.Errorf("write increment of %s: invalid block size %d", name, blockSize)
	}
	if sel.FileSize < 0 {
		return 0, fmt.Errorf("write increment of %s: negative file size %d", name, sel.FileSize)
	}
	nblocks := blockCount(sel.FileSize, blockSize)
	if nblocks > maxBlockNumber+1 {
		return 0, fmt.Errorf("write increment of %s: size %d is too large for %d-byte blocks", name, sel.FileSize, blockSize)
	}
	for i, b := range sel.Blocks {
		if int64(b) >= nblocks {
			return 0, fmt.Errorf("write increment of %s: block %d is past the file's %d blocks", name, b, nblocks)
		}
		if i > 0 && b <= sel.Blocks[i-1] {
			return 0, fmt.Errorf("write increment of %s: block %d after %d: blocks must increase", name, b, sel.Blocks[i-1])
		}
	}

	cw := &crcWriter{w: w, crc: crc32.New(castagnoli)}
	hdr := make([]byte, 0, fixedHeaderSize+4*len(sel.Blocks))
	hdr = append(hdr, Magic...)
	hdr = binary.BigEndian.AppendUint32(hdr, FormatVersion)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(blockSize))
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(sel.FileSize))
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(sel.Blocks)))
	for _, b := range sel.Blocks {
		hdr = binary.BigEndian.AppendUint32(hdr, b)
	}
	if _, err := cw.Write(hdr); err != nil {
		return cw.n, fmt.Errorf("write increment of %s: header: %w", name, err)
	}
	if err := cw.writeCRC(); err != nil {
		return cw.n, fmt.Errorf("write increment of %s: header: %w", name, err)
	}
	page := make([]byte, blockSize)
	for _, b := range sel.Blocks {
		if err := readBlocks(r, page, int64(b)*int64(blockSize), sel.FileSize); err != nil {
			return cw.n, fmt.Errorf("write increment of %s: read block %d: %w", name, b, err)
		}
		if _, err := cw.Write(page); err != nil {
			return cw.n, fmt.Errorf("write increment of %s: block %d: %w", name, b, err)
		}
	}
	if err := cw.writeCRC(); err != nil {
		return cw.n, fmt.Errorf("write increment of %s: trailer: %w", name, err)
	}
	return cw.n, nil
}

// crcWriter counts and checksums what it passes on.
type crcWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.crc.Write(p[:n])
	return n, err
}

// writeCRC writes the CRC of everything written so far.
func (c *crcWriter) writeCRC() error {
	_, err := c.Write(binary.BigEndian.AppendUint32(nil, c.crc.Sum32()))
	return err
}

// Reader decodes an increment from a stream. Every malformed input gives an
// error naming the increment that matches ErrCorrupt; none panics, and
// memory stays within a page plus the block list actually present.
type Reader struct {
	r    *bufio.Reader
	name string
	inc  Increment
	crc  hash.Hash32
	next int    // index in inc.Blocks of the next page
	page []byte // reused for every page
	err  error  // sticky: io.EOF after the verified end
}

// NewReader reads and checks the header and block list of the increment in
// r; name identifies it in errors (e.g. the file path and backup).
func NewReader(r io.Reader, name string) (*Reader, error) {
	rd := &Reader{r: bufio.NewReaderSize(r, 64<<10), name: name, crc: crc32.New(castagnoli)}
	var h [fixedHeaderSize]byte
	if err := rd.readFull(h[:], "header"); err != nil {
		return nil, err
	}
	if string(h[0:8]) != Magic {
		return nil, corruptf(name, "bad magic %q, want %q", h[0:8], Magic)
	}
	be := binary.BigEndian
	if v := be.Uint32(h[8:]); v != FormatVersion {
		return nil, corruptf(name, "format version %d, want %d", v, FormatVersion)
	}
	bs := be.Uint32(h[12:])
	if bs > pg.MaxBlockSize || !pg.ValidBlockSize(int(bs)) {
		return nil, corruptf(name, "invalid block size %d", bs)
	}
	size := be.Uint64(h[16:])
	maxSize := uint64(maxBlockNumber+1) * uint64(bs)
	if size > maxSize {
		return nil, corruptf(name, "file size %d is too large for %d-byte blocks", size, bs)
	}
	nblocks := blockCount(int64(size), int(bs))
	count := be.Uint32(h[24:])
	if int64(count) > nblocks {
		return nil, corruptf(name, "%d blocks present in a file of %d blocks", count, nblocks)
	}
	rd.inc = Increment{BlockSize: int(bs), FileSize: int64(size)}
	buf := make([]byte, 4*min(count, listChunk))
	for left := count; left > 0; {
		n := min(left, listChunk)
		if err := rd.readFull(buf[:4*n], "block list"); err != nil {
			return nil, err
		}
		for i := range n {
			b := be.Uint32(buf[4*i:])
			if int64(b) >= nblocks {
				return nil, corruptf(name, "block %d is past the file's %d blocks", b, nblocks)
			}
			if k := len(rd.inc.Blocks); k > 0 && b <= rd.inc.Blocks[k-1] {
				return nil, corruptf(name, "block %d after %d: blocks must increase", b, rd.inc.Blocks[k-1])
			}
			rd.inc.Blocks = append(rd.inc.Blocks, b)
		}
		left -= n
	}
	if err := rd.checkCRC("header"); err != nil {
		return nil, err
	}
	rd.page = make([]byte, bs)
	return rd, nil
}

// readFull reads exactly len(p) bytes into p and adds them to the CRC.
func (rd *Reader) readFull(p []byte, what string) error {
	if _, err := io.ReadFull(rd.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return corruptf(rd.name, "truncated in the %s", what)
		}
		return fmt.Errorf("read increment %s: %s: %w", rd.name, what, err)
	}
	rd.crc.Write(p)
	return nil
}

// checkCRC reads a stored CRC and compares it with that of everything read
// before it.
func (rd *Reader) checkCRC(what string) error {
	want := rd.crc.Sum32()
	var b [4]byte
	if err := rd.readFull(b[:], what+" checksum"); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(b[:]); got != want {
		return corruptf(rd.name, "%s checksum %08x, computed %08x", what, got, want)
	}
	return nil
}

// Header returns the increment's header. Its Blocks slice is shared with
// the Reader and must not be modified.
func (rd *Reader) Header() Increment { return rd.inc }

// Next returns the next page and its block number. The page is valid until
// the next call. After the last page Next reads and checks the trailing
// checksum and that nothing follows, and returns io.EOF; any later call
// returns the same. Until io.EOF the pages are unconfirmed: a corrupt
// increment is only known for sure at its end.
func (rd *Reader) Next() (uint32, []byte, error) {
	if rd.err != nil {
		return 0, nil, rd.err
	}
	if rd.next < len(rd.inc.Blocks) {
		b := rd.inc.Blocks[rd.next]
		if err := rd.readFull(rd.page, fmt.Sprintf("page of block %d", b)); err != nil {
			rd.err = err
			return 0, nil, err
		}
		rd.next++
		return b, rd.page, nil
	}
	if err := rd.checkCRC("trailing"); err != nil {
		rd.err = err
		return 0, nil, err
	}
	if _, err := rd.r.ReadByte(); err == nil {
		rd.err = corruptf(rd.name, "data after the trailing checksum")
		return 0, nil, rd.err
	} else if !errors.Is(err, io.EOF) {
		rd.err = fmt.Errorf("read increment %s: %w", rd.name, err)
		return 0, nil, rd.err
	}
	rd.err = io.EOF
	return 0, nil, io.EOF
}
