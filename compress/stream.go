package compress

import (
	"errors"
	"fmt"
	"io"
)

// errClosed is returned by Write after Close and by Read after Close.
var errClosed = errors.New("stream already closed")

// streamWriter gives every codec's writer the same contract: sticky errors
// wrapped with the codec's name, Close that reports the first error and
// never closes the destination, and resources released once.
type streamWriter struct {
	codec   string
	enc     io.WriteCloser                 // finishes the stream on Close; never closes the destination
	open    func() (io.WriteCloser, error) // if set, makes enc on the first Write or Close
	release func(ok bool)                  // optional; ok reports a clean Close, so enc may be reused
	err     error                          // first error, returned from then on
	closed  bool
}

// Write compresses p.
func (w *streamWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, fmt.Errorf("compress %s: write: %w", w.codec, errClosed)
	}
	if err := w.start(); err != nil {
		return 0, err
	}
	n, err := w.enc.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("compress %s: %w", w.codec, err)
		return n, w.err
	}
	return n, nil
}

// Close finishes the stream. Only a nil error means the destination holds a
// whole stream. Later calls return the same result.
func (w *streamWriter) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		w.err = w.start()
	}
	if w.err == nil {
		if err := w.enc.Close(); err != nil {
			w.err = fmt.Errorf("compress %s: finish: %w", w.codec, err)
		}
	}
	if w.release != nil {
		w.release(w.err == nil)
		w.release = nil
	}
	w.enc = nil
	return w.err
}

// start makes the encoder if it is made lazily.
func (w *streamWriter) start() error {
	if w.enc != nil {
		return nil
	}
	enc, err := w.open()
	if err != nil {
		w.err = fmt.Errorf("compress %s: start: %w", w.codec, err)
		return w.err
	}
	w.enc = enc
	return nil
}

// countingReader counts the bytes read from r and keeps r's first error
// other than io.EOF, so that a failing source is not reported as corrupt
// data.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

// Read reads from the source.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// streamReader gives every codec's reader the same contract: an empty
// source is a truncated stream, errors are wrapped with the codec's name
// and are sticky, and a failing source is told apart from corrupt data.
type streamReader struct {
	codec      string
	src        *countingReader
	open       func(src io.Reader) (io.Reader, error) // called on the first Read
	dec        io.Reader
	release    func(ok bool) // optional; ok reports a decoder that ended cleanly
	allowEmpty bool          // an empty source is a valid empty stream (codec "none")
	err        error         // sticky: io.EOF once the stream ended well
	closed     bool
}

// newStreamReader returns a reader that calls open on its first Read.
func newStreamReader(codec string, r io.Reader, open func(io.Reader) (io.Reader, error), release func(bool)) *streamReader {
	return &streamReader{codec: codec, src: &countingReader{r: r}, open: open, release: release}
}

// Read returns decompressed data.
func (r *streamReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.closed {
		return 0, fmt.Errorf("decompress %s: read: %w", r.codec, errClosed)
	}
	if r.dec == nil {
		dec, err := r.open(r.src)
		if err != nil {
			return 0, r.fail(err)
		}
		r.dec = dec
	}
	n, err := r.dec.Read(p)
	switch {
	case err == nil:
		if n == 0 && len(p) > 0 && r.src.err != nil {
			return 0, r.fail(r.src.err)
		}
		return n, nil
	case err == io.EOF:
		if r.src.n == 0 && !r.allowEmpty {
			return n, r.fail(fmt.Errorf("empty input: %w", io.ErrUnexpectedEOF))
		}
		r.err = io.EOF
		r.done(true)
		return n, io.EOF
	default:
		return n, r.fail(err)
	}
}

// fail records err, preferring the source's own error to whatever the
// decoder made of it, and releases the decoder.
func (r *streamReader) fail(err error) error {
	if r.src.err != nil {
		r.err = fmt.Errorf("decompress %s: read compressed stream: %w", r.codec, r.src.err)
	} else {
		r.err = fmt.Errorf("decompress %s: %w", r.codec, err)
	}
	r.done(false)
	return r.err
}

// done releases the decoder once.
func (r *streamReader) done(ok bool) {
	if r.release != nil {
		r.release(ok)
		r.release = nil
	}
	r.dec = nil
}

// Close releases the decoder. It does not close the source.
func (r *streamReader) Close() error {
	if !r.closed {
		r.closed = true
		if r.err == nil {
			r.err = fmt.Errorf("decompress %s: read: %w", r.codec, errClosed)
		}
		r.done(false)
	}
	return nil
}
