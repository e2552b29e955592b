package compress

import (
	"io"

	"github.com/pierrec/lz4/v4"
)

// lz4BlockSize bounds the memory of one stream: a writer holds one block of
// input and one of output, a reader one of each too. 1 MiB blocks compress
// as well as the library's 4 MiB default (LZ4's window is 64 KiB either way)
// at a quarter of the memory, which matters with many streams in flight.
const lz4BlockSize = lz4.Block1Mb

// BlockSize is the write size at which the lz4 codec compresses straight
// from the caller's buffer (a write of a whole block, when none is
// pending) instead of copying into a block of its own. Other codecs take
// any size.
const BlockSize = int(lz4BlockSize)

// lz4Levels maps levels 1..9 to the library's high-compression levels; the
// default, 0, is its fast mode.
var lz4Levels = [...]lz4.CompressionLevel{
	lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4, lz4.Level5,
	lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9,
}

// lz4Codec writes the LZ4 frame format with a checksum on every block, so
// that damage to the stored bytes is detected in the block it hits. The
// frame's content checksum (XXH32 of all the plaintext, a tenth of a full
// backup's CPU) is left out: every caller checksums its plaintext already
// (a file's CRC-32C in a backup, an object's digest for WAL), and frames
// that carry one are still checked when read.
type lz4Codec struct{}

// Name returns "lz4".
func (lz4Codec) Name() string { return "lz4" }

// Ext returns "lz4".
func (lz4Codec) Ext() string { return "lz4" }

func (lz4Codec) levels() levelRange { return levelRange{min: 1, max: len(lz4Levels), def: 0} }

// NewWriter returns a writer of one LZ4 frame into w.
func (c lz4Codec) NewWriter(w io.Writer, level int) (io.WriteCloser, error) {
	return c.newWriterN(w, level, 1)
}

// newWriterN is NewWriter compressing up to n blocks at once, each on a
// goroutine of its own; the library writes the blocks to w in order, from
// a goroutine of its own, and Close waits for them. A stream then holds up
// to n+2 blocks of input and of output.
func (c lz4Codec) newWriterN(w io.Writer, level, n int) (io.WriteCloser, error) {
	if err := checkLevel(c, level); err != nil {
		return nil, err
	}
	lvl := lz4.Fast
	if level > 0 {
		lvl = lz4Levels[level-1]
	}
	zw := lz4.NewWriter(w)
	if err := zw.Apply(
		lz4.BlockSizeOption(lz4BlockSize),
		lz4.BlockChecksumOption(true),
		lz4.ChecksumOption(false),
		lz4.ConcurrencyOption(max(n, 1)),
		lz4.CompressionLevelOption(lvl),
	); err != nil {
		return nil, err
	}
	return &streamWriter{codec: c.Name(), enc: zw}, nil
}

// NewReader returns a reader of the LZ4 frame in r.
func (c lz4Codec) NewReader(r io.Reader) (io.ReadCloser, error) {
	var zr *lz4.Reader
	open := func(src io.Reader) (io.Reader, error) {
		zr = lz4.NewReader(src)
		if err := zr.Apply(lz4.ConcurrencyOption(1)); err != nil {
			return nil, err
		}
		return zr, nil
	}
	release := func(bool) {
		if zr != nil {
			zr.Reset(nil) // returns the block buffers to the library's pool
		}
	}
	return newStreamReader(c.Name(), r, open, release), nil
}
