package compress

import (
	"io"

	"github.com/andybalholm/brotli"
)

// brotliDefaultLevel is the quality used for 0. See the package
// documentation for why.
const brotliDefaultLevel = 3

// brotliCodec writes the brotli format. Brotli has no checksum: damage
// inside the data can decode without error to wrong bytes, so readers rely
// on the caller's checksum of the plaintext, as with "none". Truncation is
// always detected, because a stream must end with its last meta-block.
type brotliCodec struct{}

// Name returns "brotli".
func (brotliCodec) Name() string { return "brotli" }

// Ext returns "br".
func (brotliCodec) Ext() string { return "br" }

// levels are brotli's qualities 1..11 (quality 0 cannot be chosen, since 0
// means the default).
func (brotliCodec) levels() levelRange {
	return levelRange{min: 1, max: brotli.BestCompression, def: brotliDefaultLevel}
}

// NewWriter returns a writer of one brotli stream into w.
func (c brotliCodec) NewWriter(w io.Writer, level int) (io.WriteCloser, error) {
	level, err := resolveLevel(c, level)
	if err != nil {
		return nil, err
	}
	return &streamWriter{codec: c.Name(), enc: brotli.NewWriterLevel(w, level)}, nil
}

// NewReader returns a reader of the brotli stream in r.
func (c brotliCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	open := func(src io.Reader) (io.Reader, error) {
		return brotli.NewReader(&holdbackReader{r: src}), nil
	}
	return newStreamReader(c.Name(), r, open, nil), nil
}

// brotliHoldback is how many bytes holdbackReader keeps back: more than the
// 8 bytes the brotli decoder buffers internally across reads.
const brotliHoldback = 64

// holdbackReader hands its source to the brotli decoder so that the last
// brotliHoldback bytes of the source arrive in one Read, together with the
// end of the source.
//
// The decoder (github.com/andybalholm/brotli v1.2.8) reports "excessive
// input" for a good stream when the source's reads split its last few bytes:
// those bytes go through an internal 8-byte buffer that the decoder does not
// empty at the end of the stream. Reads from a network or a pipe split
// anywhere, so this would fail good restores at random. Holding back the
// tail keeps the end of the stream out of that buffer; real trailing data
// is still reported.
type holdbackReader struct {
	r   io.Reader
	buf []byte // unread bytes of the source are buf[start:end]
	start,
	end int
	err error // the source's error (io.EOF at its end), once seen
}

// Read returns bytes of the source, keeping brotliHoldback bytes back
// until the source ends.
func (h *holdbackReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if h.buf == nil {
		h.buf = make([]byte, 32<<10)
	}
	for h.err == nil && h.end-h.start <= brotliHoldback {
		if h.start > 0 {
			h.end = copy(h.buf, h.buf[h.start:h.end])
			h.start = 0
		}
		n, err := h.r.Read(h.buf[h.end:])
		h.end += n
		if err != nil {
			h.err = err
		} else if n == 0 {
			// A source may return 0, nil; let the caller retry.
			return 0, nil
		}
	}
	avail := h.end - h.start
	if h.err == nil {
		avail -= brotliHoldback
	}
	if avail == 0 {
		return 0, h.err
	}
	n := copy(p, h.buf[h.start:h.start+avail])
	h.start += n
	return n, nil
}
