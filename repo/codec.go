package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/crypto"
	"github.com/walrusdb/walrus/storage"
)

// EncryptedExt is the extension of age-encrypted objects.
const EncryptedExt = "age"

// MetaSHA256 is the metadata key under which objects written before
// digests (MetaDigest) hold the bare hex SHA-256 of their plaintext.
// walrus still reads it; it no longer writes it.
const MetaSHA256 = "walrus-sha256"

// MetaSize is the metadata key holding the plaintext size in bytes.
const MetaSize = "walrus-size"

// MetaStoredSize is the metadata key holding the size of the stored
// object itself, recorded when it is known before the upload (wal-push's
// buffered objects). An object whose size differs is damaged (a truncated
// upload), whatever its recorded digest says.
const MetaStoredSize = "walrus-stored-size"

// RemoveTruncated removes the object key, which an upload of this process
// has just stored short (cause says how), and returns cause with the
// outcome. Left under its final name with the metadata of the whole, a
// short object would pass for the whole when the upload is retried.
func RemoveTruncated(ctx context.Context, st storage.Store, key string, cause error) error {
	if err := st.Delete(context.WithoutCancel(ctx), key); err != nil {
		return fmt.Errorf("%w; removing it failed too (%v): remove %s before retrying", cause, err, key)
	}
	return fmt.Errorf("%w (the short object was removed)", cause)
}

// Encoder turns plaintext into stored objects. It is built once from the
// configuration and passed down; a nil Encryptor means plaintext.
type Encoder struct {
	Codec     compress.Codec
	Level     int
	Encryptor *crypto.Encryptor
}

// Encrypted reports whether objects are encrypted.
func (e *Encoder) Encrypted() bool { return e.Encryptor != nil }

// Suffix is appended to a base key: ".<codec ext>" plus ".age" if encrypted.
func (e *Encoder) Suffix() string {
	s := "." + e.Codec.Ext()
	if e.Encryptor != nil {
		s += "." + EncryptedExt
	}
	return s
}

// Wrap returns a writer that compresses, then encrypts, into dst. Close
// finishes both streams (it does not close dst) and its error must be
// checked.
func (e *Encoder) Wrap(dst io.Writer) (io.WriteCloser, error) {
	var enc io.WriteCloser
	w := dst
	if e.Encryptor != nil {
		var err error
		enc, err = e.Encryptor.Encrypt(dst)
		if err != nil {
			return nil, fmt.Errorf("start encryption: %w", err)
		}
		w = enc
	}
	cw, err := e.Codec.NewWriter(w, e.Level)
	if err != nil {
		return nil, fmt.Errorf("start %s compression: %w", e.Codec.Name(), err)
	}
	return &chainWriter{cw: cw, enc: enc}, nil
}

type chainWriter struct {
	cw  io.WriteCloser
	enc io.WriteCloser
}

func (c *chainWriter) Write(p []byte) (int, error) { return c.cw.Write(p) }

func (c *chainWriter) Close() error {
	if err := c.cw.Close(); err != nil {
		return fmt.Errorf("finish compression: %w", err)
	}
	if c.enc != nil {
		if err := c.enc.Close(); err != nil {
			return fmt.Errorf("finish encryption: %w", err)
		}
	}
	return nil
}

var errUploadEnded = errors.New("upload ended before the stream")

// Written describes an object that Put stored.
type Written struct {
	Key        string // full key with suffix
	RawSize    int64  // plaintext bytes
	StoredSize int64  // bytes stored
	// Digest is the digest of the plaintext (see MetaDigest).
	Digest string
	// StoredSHA256 is the hex SHA-256 of the stored bytes: what a
	// manifest records to bind a part to its object. Hashing the stored
	// bytes costs a tenth of hashing the plaintext with lz4.
	StoredSHA256 string
	// Recognised is set when a create-only Put met an object already
	// stored that is byte for byte what it sent: an earlier attempt of
	// this Put whose answer was lost, or another writer of the same bytes.
	// Put may not have written it, so a caller cleaning up after a failure
	// must not remove it.
	Recognised bool
}

// Put streams src through the encoder into st under base+Suffix(). The
// stored size is checked with Stat before success is reported (TRAPS 3).
// opts.Metadata is stored as given.
//
// When src is an io.ReadSeeker (a file), the body handed to st can be
// encoded again from src's starting offset for another attempt (it
// implements retry.Reopener), so that the retry layer resends the whole
// object after a failure midway. Any other src is read once.
//
// A create-only Put (opts.IfNotExists) that meets storage.ErrExists after
// the whole object went out, with a body that cannot be encoded again, reads
// the stored object back: when it is byte for byte what this Put sent
// (same size and SHA-256), an earlier attempt of this very Put stored it
// and lost the answer (a retry of a lost response meets its own object),
// and Put succeeds.
func (e *Encoder) Put(ctx context.Context, st storage.Store, base string, src io.Reader, opts storage.PutOptions) (Written, error) {
	key := base + e.Suffix()
	b := &encodingBody{enc: e, src: src}
	if rs, ok := src.(io.ReadSeeker); ok {
		// A pipe or a socket may claim to seek and fail.
		if pos, err := rs.Seek(0, io.SeekCurrent); err == nil {
			b.seeker, b.start = rs, pos
		}
	}
	b.begin()
	var body io.Reader = b
	if b.seeker != nil {
		body = reopenableBody{b}
	}
	opts.Size = -1
	perr := st.Put(ctx, key, body, opts)
	werr := b.end()
	a := b.cur
	recognised := false
	if opts.IfNotExists && b.seeker == nil && werr == nil && errors.Is(perr, storage.ErrExists) {
		if same, err := storedEquals(ctx, st, key, a.stored, a.storedSum.Sum(nil)); err == nil && same {
			perr, recognised = nil, true
		}
	}
	if werr != nil && !errors.Is(werr, errUploadEnded) {
		return Written{}, fmt.Errorf("encode %s: %w", key, werr)
	}
	if perr != nil {
		return Written{}, fmt.Errorf("put %s: %w", key, perr)
	}
	info, err := st.Stat(ctx, key)
	if err != nil {
		return Written{}, fmt.Errorf("confirm %s: %w", key, err)
	}
	if info.Size != a.stored {
		return Written{}, RemoveTruncated(ctx, st, key, fmt.Errorf("confirm %s: stored size %d, expected %d: the upload was truncated, retry", key, info.Size, a.stored))
	}
	return Written{Key: key, RawSize: a.raw, StoredSize: a.stored, Digest: a.plain.Digest(), StoredSHA256: hex.EncodeToString(a.storedSum.Sum(nil)), Recognised: recognised}, nil
}

// storedEquals reports whether the object under key is size bytes whose
// SHA-256 is sum.
func storedEquals(ctx context.Context, st storage.Store, key string, size int64, sum []byte) (bool, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return false, err
	}
	return n == size && bytes.Equal(h.Sum(nil), sum), nil
}

// encodingBody is the body of a Put: src encoded on a goroutine of its
// own into a pipe. Each attempt of the upload reads one encoding.
type encodingBody struct {
	enc    *Encoder
	src    io.Reader
	seeker io.ReadSeeker // src, when it can be rewound to start
	start  int64
	cur    *encoding
}

// encoding is one pass of the encoder over src.
type encoding struct {
	pr          *io.PipeReader
	done        chan error
	plain       Digester  // of the plaintext
	storedSum   hash.Hash // SHA-256 of the stored bytes
	raw, stored int64     // set before done is sent
}

// begin starts an encoding of src from where it stands.
func (b *encodingBody) begin() {
	pr, pw := io.Pipe()
	a := &encoding{pr: pr, done: make(chan error, 1), plain: NewDigester(), storedSum: sha256.New()}
	b.cur = a
	go func() {
		cw := &countWriter{w: io.MultiWriter(pw, a.storedSum)}
		w, err := b.enc.Wrap(cw)
		if err == nil {
			a.raw, err = CopyDigested(w, a.plain, b.src, make([]byte, compress.BlockSize))
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		a.stored = cw.n
		pw.CloseWithError(err)
		a.done <- err
	}()
}

// end stops the current encoding, if the upload left it unfinished, and
// returns its error: nil when it encoded the whole of src.
func (b *encodingBody) end() error {
	b.cur.pr.CloseWithError(errUploadEnded)
	return <-b.cur.done
}

// Read reads the current encoding.
func (b *encodingBody) Read(p []byte) (int, error) { return b.cur.pr.Read(p) }

// reopenableBody is an encodingBody over a seekable src: retry.Reopener.
type reopenableBody struct{ b *encodingBody }

// Read reads the current encoding.
func (r reopenableBody) Read(p []byte) (int, error) { return r.b.Read(p) }

// Reopen ends the current encoding, rewinds src and starts another.
func (r reopenableBody) Reopen() (io.Reader, error) {
	if err := r.b.end(); err != nil && !errors.Is(err, errUploadEnded) {
		return nil, err
	}
	if _, err := r.b.seeker.Seek(r.b.start, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind the source: %w", err)
	}
	r.b.begin()
	return r, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ParseKey splits a stored key into its base (without suffix), codec and
// whether it is encrypted.
func ParseKey(key string) (base string, codec compress.Codec, encrypted bool, err error) {
	k := key
	if strings.HasSuffix(k, "."+EncryptedExt) {
		encrypted = true
		k = strings.TrimSuffix(k, "."+EncryptedExt)
	}
	i := strings.LastIndexByte(k, '.')
	if i < 0 {
		return "", nil, false, fmt.Errorf("object %s: no codec extension in its name", key)
	}
	codec, err = compress.ByExt(k[i+1:])
	if err != nil {
		return "", nil, false, fmt.Errorf("object %s: %w", key, err)
	}
	return k[:i], codec, encrypted, nil
}

// Decoder turns stored objects back into plaintext. A nil Decryptor can
// read only plaintext objects.
type Decoder struct {
	Decryptor *crypto.Decryptor
}

// ErrNoIdentity means an encrypted object was met without an identity.
var ErrNoIdentity = errors.New("object is encrypted but no identity is configured: set encryption.identity_file (WALRUS_AGE_IDENTITY_FILE)")

// Unwrap returns the plaintext of src, the stored bytes of key. Decryption
// and decompression errors surface from Read.
func (d *Decoder) Unwrap(key string, src io.Reader) (io.ReadCloser, error) {
	_, codec, encrypted, err := ParseKey(key)
	if err != nil {
		return nil, err
	}
	r := src
	if encrypted {
		if d.Decryptor == nil {
			return nil, fmt.Errorf("read %s: %w", key, ErrNoIdentity)
		}
		r, err = d.Decryptor.Decrypt(src)
		if err != nil {
			return nil, fmt.Errorf("decrypt %s: %w", key, err)
		}
	}
	cr, err := codec.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", key, err)
	}
	return cr, nil
}

// Open gets key from st and returns its plaintext. Closing the result
// closes the object.
func (d *Decoder) Open(ctx context.Context, st storage.Store, key string) (io.ReadCloser, error) {
	rc, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	pr, err := d.Unwrap(key, rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &readCloser{Reader: pr, close: func() error {
		pr.Close()
		return rc.Close()
	}}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// ErrChecksum means an object's content does not match its recorded
// checksum.
var ErrChecksum = errors.New("checksum mismatch")
