package compress

import "io"

// noneCodec stores data as it is. It cannot detect truncation or damage: an
// empty or cut object reads as shorter data. Callers rely on their own
// checksum of the plaintext (walrus records one for every object) or on
// encryption, which authenticates every chunk.
type noneCodec struct{}

// Name returns "none".
func (noneCodec) Name() string { return "none" }

// Ext returns "none".
func (noneCodec) Ext() string { return "none" }

// levels: "none" takes no level.
func (noneCodec) levels() levelRange { return levelRange{} }

// NewWriter returns a writer that passes data to w unchanged.
func (c noneCodec) NewWriter(w io.Writer, level int) (io.WriteCloser, error) {
	if err := checkLevel(c, level); err != nil {
		return nil, err
	}
	return &streamWriter{codec: c.Name(), enc: nopCloser{w}}, nil
}

// NewReader returns a reader of r's data unchanged.
func (c noneCodec) NewReader(r io.Reader) (io.ReadCloser, error) {
	open := func(src io.Reader) (io.Reader, error) { return src, nil }
	sr := newStreamReader(c.Name(), r, open, nil)
	sr.allowEmpty = true
	return sr, nil
}

// nopCloser is a writer whose Close does nothing.
type nopCloser struct{ io.Writer }

// Close does nothing.
func (nopCloser) Close() error { return nil }
