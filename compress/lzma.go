package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// lzmaDefaultLevel is the level used for 0: xz's own default preset.
const lzmaDefaultLevel = 6

// lzmaDictCaps are the dictionary sizes of xz's presets 1..9. The decoder
// needs as much memory as the dictionary, so higher levels cost memory on
// restore too; beyond the size of the input a larger dictionary gains
// nothing.
var lzmaDictCaps = [...]int{
	1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20,
}

// lzmaCodec writes the xz container (one stream, one block, LZMA2) with a
// CRC64 of the content; the headers, index and footer carry CRC32s of their
// own.
type lzmaCodec struct{}

// Name returns "lzma".
func (lzmaCodec) Name() string { return "lzma" }

// Ext returns "xz".
func (lzmaCodec) Ext() string { return "xz" }

// levels follow xz's presets 1..9 (preset 0 cannot be chosen, since 0 means
// the default).
func (lzmaCodec) levels() levelRange {
	return levelRange{min: 1, max: len(lzmaDictCaps), def: lzmaDefaultLevel}
}

// NewWriter returns a writer of one xz stream into w. Nothing is written to
// w before the first Write or Close.
func (c lzmaCodec) NewWriter(w io.Writer, level int) (io.WriteCloser, error) {
	level, err := resolveLevel(c, level)
	if err != nil {
		return nil, err
	}
	cfg := xz.WriterConfig{
		DictCap:  lzmaDictCaps[level-1],
		CheckSum: xz.CRC64,
		Matcher:  lzma.HashTable4,
	}
	if err := cfg.Verify(); err != nil {
		return nil, err
	}
	open := func() (io.WriteCloser, error) { return cfg.NewWriter(w) }
	return &streamWriter{codec: c.Name(), open: open}, nil
}

// NewReader returns a reader of the xz stream in r. Data after the stream
// is an error.
func (c lzmaCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	open := func(src io.Reader) (io.Reader, error) {
		tail := &tailReader{r: src}
		// The smallest dictionary: the stream's header asks for what it
		// needs, and the reader takes the larger of the two.
		cfg := xz.ReaderConfig{DictCap: lzma.MinDictCap, SingleStream: true}
		xr, err := cfg.NewReader(tail)
		if err != nil {
			return nil, err
		}
		return &xzVerifier{r: xr, tail: tail}, nil
	}
	return newStreamReader(c.Name(), r, open, nil), nil
}

// xzTailMax is the most of the end of an xz stream that xzVerifier keeps:
// room for the footer and an index of hundreds of blocks (walrus writes
// one).
const xzTailMax = 16 << 10

// tailReader remembers the first 12 and the last xzTailMax bytes read
// through it, and how many there were.
type tailReader struct {
	r      io.Reader
	n      int64
	header []byte
	tail   []byte
}

// Read reads from the source.
func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	got := p[:n]
	t.n += int64(n)
	if k := min(xzHeaderLen-len(t.header), len(got)); k > 0 {
		t.header = append(t.header, got[:k]...)
	}
	if len(got) > xzTailMax {
		got = got[len(got)-xzTailMax:]
	}
	if len(t.tail)+len(got) > 2*xzTailMax {
		keep := xzTailMax - len(got)
		t.tail = append(t.tail[:0], t.tail[len(t.tail)-keep:]...)
	}
	t.tail = append(t.tail, got...)
	return n, err
}

// xzVerifier checks, when the xz reader reports the end of the stream, that
// the stream really ended: that it closes with a valid index and footer that
// account for every byte read and every byte returned.
//
// The xz reader (github.com/ulikunitz/xz v0.5.17) takes a source that ends
// inside a block header, or a damaged block header size, for the end of the
// stream and returns io.EOF early with no error; a truncated object would
// then restore as a short file.
type xzVerifier struct {
	r    io.Reader
	tail *tailReader
	out  int64 // bytes returned
}

// Read returns decompressed data.
func (v *xzVerifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.out += int64(n)
	if err == io.EOF {
		if verr := v.verifyEnd(); verr != nil {
			return n, verr
		}
	}
	return n, err
}

// Sizes of the parts of an xz stream.
const (
	xzHeaderLen = 12
	xzFooterLen = 12
)

// errXZEnd is the error for a stream that does not end as xz streams must.
var errXZEnd = fmt.Errorf("xz stream ends early or is damaged: %w", io.ErrUnexpectedEOF)

// verifyEnd checks the footer and index at the end of what was read.
func (v *xzVerifier) verifyEnd() error {
	t := v.tail
	if len(t.header) < xzHeaderLen || len(t.tail) < xzFooterLen {
		return errXZEnd
	}
	f := t.tail[len(t.tail)-xzFooterLen:]
	if string(f[10:12]) != "YZ" || crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[0:4]) {
		return errXZEnd
	}
	if string(f[8:10]) != string(t.header[6:8]) {
		return errors.New("xz footer flags differ from the header's")
	}
	indexLen := (int64(binary.LittleEndian.Uint32(f[4:8])) + 1) * 4
	if indexLen > int64(len(t.tail)-xzFooterLen) {
		if t.n < indexLen+xzHeaderLen+xzFooterLen {
			return errXZEnd
		}
		return fmt.Errorf("xz index of %d bytes is too large to verify (at most %d): not a stream walrus wrote", indexLen, xzTailMax-xzFooterLen)
	}
	index := t.tail[len(t.tail)-xzFooterLen-int(indexLen) : len(t.tail)-xzFooterLen]
	body, sum := index[:len(index)-4], index[len(index)-4:]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(sum) || body[0] != 0 {
		return errXZEnd
	}
	rest := body[1:]
	next := func() (uint64, bool) {
		x, k := binary.Uvarint(rest)
		if k <= 0 {
			return 0, false
		}
		rest = rest[k:]
		return x, true
	}
	records, ok := next()
	if !ok || records > uint64(len(rest)) {
		return errXZEnd
	}
	var blocks, plain uint64
	for range records {
		unpadded, ok1 := next()
		size, ok2 := next()
		if !ok1 || !ok2 {
			return errXZEnd
		}
		blocks += (unpadded + 3) &^ 3
		plain += size
	}
	for _, b := range rest {
		if b != 0 {
			return errXZEnd
		}
	}
	if plain != uint64(v.out) || xzHeaderLen+blocks+uint64(indexLen)+xzFooterLen != uint64(t.n) {
		return errXZEnd
	}
	return nil
}
