package compress

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstdMaxWindow is the largest window a zstd stream may ask of the decoder:
// 128 MiB, the limit of the reference tool without --long. walrus writes
// windows of at most 8 MiB; the limit keeps a damaged or hostile header from
// making the decoder allocate gigabytes.
const zstdMaxWindow = 1 << 27

// zstdDefaultLevel is the level used for 0. See the package documentation
// for why.
const zstdDefaultLevel = 3

// zstdEncoders pools encoders by zstd.EncoderLevel: an encoder owns a few
// MiB of tables and history that are worth reusing across WAL segments.
var zstdEncoders [5]sync.Pool

// zstdDecoders pools stream decoders.
var zstdDecoders sync.Pool

// zstdCodec writes one zstd frame with its content checksum. Every stream
// is encoded and decoded on the caller's goroutine (concurrency 1): callers
// run many streams in parallel, and per-stream goroutines would only add
// contention and memory.
type zstdCodec struct{}

// Name returns "zstd".
func (zstdCodec) Name() string { return "zstd" }

// Ext returns "zst".
func (zstdCodec) Ext() string { return "zst" }

// levels are zstd's own 1..22; the library implements four speeds, and each
// level maps to the nearest (zstd.EncoderLevelFromZstd).
func (zstdCodec) levels() levelRange { return levelRange{min: 1, max: 22, def: zstdDefaultLevel} }

// NewWriter returns a writer of one zstd frame into w.
func (c zstdCodec) NewWriter(w io.Writer, level int) (io.WriteCloser, error) {
	return c.newWriterN(w, level, 1)
}

// newWriterN is NewWriter that, for n > 1, encodes a block on a goroutine
// of its own while the caller fills the next one (the library's concurrent
// stream mode). Such encoders are not pooled: they serve few, long streams.
func (c zstdCodec) newWriterN(w io.Writer, level, n int) (io.WriteCloser, error) {
	level, err := resolveLevel(c, level)
	if err != nil {
		return nil, err
	}
	speed := zstd.EncoderLevelFromZstd(level)
	if n > 1 {
		enc, err := zstd.NewWriter(w,
			zstd.WithEncoderLevel(speed),
			zstd.WithEncoderConcurrency(n),
			zstd.WithEncoderCRC(true),
			zstd.WithZeroFrames(true),
		)
		if err != nil {
			return nil, err
		}
		return &streamWriter{codec: c.Name(), enc: enc}, nil
	}
	pool := &zstdEncoders[speed]
	enc, _ := pool.Get().(*zstd.Encoder)
	if enc == nil {
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(speed),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(true),
			zstd.WithZeroFrames(true), // an empty input still makes a whole frame
		)
		if err != nil {
			return nil, err
		}
	}
	enc.Reset(w)
	release := func(ok bool) {
		if ok {
			enc.Reset(nil) // drop the reference to w
			pool.Put(enc)
		}
	}
	return &streamWriter{codec: c.Name(), enc: enc, release: release}, nil
}

// NewReader returns a reader of the zstd frame in r.
func (c zstdCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	var dec *zstd.Decoder
	open := func(src io.Reader) (io.Reader, error) {
		dec, _ = zstdDecoders.Get().(*zstd.Decoder)
		if dec == nil {
			var err error
			dec, err = zstd.NewReader(nil,
				zstd.WithDecoderConcurrency(1),
				zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(zstdMaxWindow),
			)
			if err != nil {
				return nil, err
			}
		}
		// src is a *countingReader, never a *bytes.Buffer: the decoder
		// streams instead of decoding a whole buffer at once.
		if err := dec.Reset(src); err != nil {
			dec.Close()
			dec = nil
			return nil, err
		}
		return dec, nil
	}
	release := func(ok bool) {
		if dec == nil {
			return
		}
		if ok && dec.Reset(nil) == nil {
			zstdDecoders.Put(dec)
		} else {
			dec.Close()
		}
		dec = nil
	}
	return newStreamReader(c.Name(), r, open, release), nil
}
