package compress

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Codec compresses and decompresses streams in one format.
//
// A Codec is stateless and safe for concurrent use: every call to NewWriter or
// NewReader starts an independent stream.
type Codec interface {
	// Name is the codec's name in configuration: "lz4", "zstd", "brotli",
	// "lzma" or "none".
	Name() string
	// Ext is the file extension, without a dot, that names objects written
	// with this codec: "lz4", "zst", "br", "xz" or "none".
	Ext() string
	// NewWriter returns a writer that compresses into w. level 0 means the
	// codec's default; other values must pass ValidateLevel. Close flushes and
	// finishes the stream; it must be called and its error matters. Close
	// does not close w. After an error every later Write and Close returns
	// that error.
	NewWriter(w io.Writer, level int) (io.WriteCloser, error)
	// NewReader returns a reader of the data decompressed from r. It does
	// not read from r; Read does. Corrupt, truncated or empty input makes
	// Read fail (a truncation wraps io.ErrUnexpectedEOF): a stream never
	// ends early with io.EOF. An error from r itself is returned wrapped.
	// Close releases the decoder; it does not close r and need not be
	// called after Read returned io.EOF or an error, but it may be.
	NewReader(r io.Reader) (io.ReadCloser, error)
}

// multiWriter is implemented by codecs whose writer can work on several
// blocks of one stream at once.
type multiWriter interface {
	newWriterN(w io.Writer, level, n int) (io.WriteCloser, error)
}

// WithConcurrency returns a codec that writes exactly c's format, under
// c's name and extension, but whose writers compress up to n blocks of a
// stream at once on goroutines of their own, when c can (lz4: n blocks in
// parallel; zstd: one block encoded while the next is filled); other
// codecs, and n <= 1, give c itself. It is meant for a few large streams
// at once (the parts of a base backup), where one goroutine per stream
// would leave cores idle; many small streams in parallel (WAL) are better
// served by c. Such a writer holds a few more blocks in memory (lz4:
// n+2 blocks of 1 MiB in and out), and writes to its destination from
// another goroutine than the caller's, one Write at a time; Close still
// returns only once everything is written. Readers are c's.
func WithConcurrency(c Codec, n int) Codec {
	if _, ok := c.(multiWriter); !ok || n <= 1 {
		return c
	}
	return concurrentCodec{Codec: c, n: n}
}

// concurrentCodec is a codec whose writers use n goroutines.
type concurrentCodec struct {
	Codec
	n int
}

func (c concurrentCodec) levels() levelRange { return c.Codec.(leveled).levels() }

// NewWriter returns c's writer with concurrency c.n. A failure of w
// fails the next Write, as with any writer, although w is written on
// another goroutine.
func (c concurrentCodec) NewWriter(w io.Writer, level int) (io.WriteCloser, error) {
	dst := &watchedWriter{w: w}
	zw, err := c.Codec.(multiWriter).newWriterN(dst, level, c.n)
	if err != nil {
		return nil, err
	}
	return &failFastWriter{WriteCloser: zw, dst: dst}, nil
}

// watchedWriter remembers the first error of w, which another goroutine
// writes.
type watchedWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (d *watchedWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if err != nil {
		d.mu.Lock()
		if d.err == nil {
			d.err = err
		}
		d.mu.Unlock()
	}
	return n, err
}

func (d *watchedWriter) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// failFastWriter stops taking data once its destination failed.
type failFastWriter struct {
	io.WriteCloser
	dst *watchedWriter
}

func (f *failFastWriter) Write(p []byte) (int, error) {
	if err := f.dst.failed(); err != nil {
		return 0, err
	}
	return f.WriteCloser.Write(p)
}

// DefaultName is the codec used when the configuration names none.
const DefaultName = "lz4"

// codecs lists every codec in the order Names reports them.
var codecs = []Codec{lz4Codec{}, zstdCodec{}, brotliCodec{}, lzmaCodec{}, noneCodec{}}

// levelRange is the range of explicit levels a codec accepts; 0 (the
// default) is always accepted. A codec with max 0 takes no level.
type levelRange struct {
	min, max, def int
}

// leveled is implemented by every codec in this package.
type leveled interface {
	levels() levelRange
}

// ByName returns the codec called name ("lz4", "zstd", "brotli", "lzma",
// "none").
func ByName(name string) (Codec, error) {
	for _, c := range codecs {
		if c.Name() == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("unknown compression codec %q: use one of %s", name, strings.Join(Names(), ", "))
}

// ByExt returns the codec whose objects end in "."+ext ("lz4", "zst", "br",
// "xz", "none"); ext has no leading dot.
func ByExt(ext string) (Codec, error) {
	for _, c := range codecs {
		if c.Ext() == ext {
			return c, nil
		}
	}
	exts := make([]string, len(codecs))
	for i, c := range codecs {
		exts[i] = c.Ext()
	}
	return nil, fmt.Errorf("unknown compressed object extension %q: walrus writes only %s; the object was not written by walrus or by a newer version", ext, strings.Join(exts, ", "))
}

// Names returns the names of every codec, DefaultName first. The caller owns
// the slice.
func Names() []string {
	names := make([]string, len(codecs))
	for i, c := range codecs {
		names[i] = c.Name()
	}
	return names
}

// ValidateLevel checks that level is valid for the codec called name: 0 (the
// codec's default) always is; the error for another value names the valid
// range.
func ValidateLevel(name string, level int) error {
	c, err := ByName(name)
	if err != nil {
		return err
	}
	return checkLevel(c, level)
}

// checkLevel is ValidateLevel for a codec already found.
func checkLevel(c Codec, level int) error {
	if level == 0 {
		return nil
	}
	r := c.(leveled).levels()
	if r.max == 0 {
		return fmt.Errorf("%s compression takes no level: use 0", c.Name())
	}
	if level < r.min || level > r.max {
		return fmt.Errorf("%s compression level %d is out of range: use %d..%d, or 0 for the default (%d)", c.Name(), level, r.min, r.max, r.def)
	}
	return nil
}

// resolveLevel validates level and replaces 0 with the codec's default.
func resolveLevel(c Codec, level int) (int, error) {
	if err := checkLevel(c, level); err != nil {
		return 0, err
	}
	if level == 0 {
		return c.(leveled).levels().def, nil
	}
	return level, nil
}
