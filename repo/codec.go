package repo

import (
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

// MetaSHA256 is the metadata key holding the hex SHA-256 of an object's
// plaintext.
const MetaSHA256 = "walrus-sha256"

// MetaSize is the metadata key holding the plaintext size in bytes.
const MetaSize = "walrus-size"

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
	SHA256     string // hex SHA-256 of the plaintext
}

// Put streams src through the encoder into st under base+Suffix(). The
// stored size is checked with Stat before success is reported (TRAPS 3).
// opts.Metadata is stored as given.
func (e *Encoder) Put(ctx context.Context, st storage.Store, base string, src io.Reader, opts storage.PutOptions) (Written, error) {
	key := base + e.Suffix()
	pr, pw := io.Pipe()
	h := sha256.New()
	var raw, stored int64
	done := make(chan error, 1)
	go func() {
		cw := &countWriter{w: pw}
		w, err := e.Wrap(cw)
		if err == nil {
			raw, err = io.Copy(io.MultiWriter(w, h), src)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		stored = cw.n
		pw.CloseWithError(err)
		done <- err
	}()
	opts.Size = -1
	perr := st.Put(ctx, key, pr, opts)
	pr.CloseWithError(errUploadEnded)
	werr := <-done
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
	if info.Size != stored {
		return Written{}, fmt.Errorf("confirm %s: stored size %d, expected %d: the upload was truncated, retry", key, info.Size, stored)
	}
	return Written{Key: key, RawSize: raw, StoredSize: stored, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
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

// VerifyingReader wraps r and, at EOF, compares the SHA-256 and size of
// everything read with want (hex) and wantSize (-1: unchecked). A mismatch
// is returned from Read instead of io.EOF.
func VerifyingReader(r io.Reader, name, want string, wantSize int64) io.Reader {
	return &verifyReader{r: r, h: sha256.New(), name: name, want: want, wantSize: wantSize}
}

type verifyReader struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	name     string
	want     string
	wantSize int64
}

// ErrChecksum means an object's content does not match its recorded
// checksum.
var ErrChecksum = errors.New("checksum mismatch")

func (v *verifyReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) {
		if v.wantSize >= 0 && v.n != v.wantSize {
			return n, fmt.Errorf("%s: %w: %d bytes, expected %d", v.name, ErrChecksum, v.n, v.wantSize)
		}
		if v.want != "" {
			if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
				return n, fmt.Errorf("%s: %w: sha256 %s, expected %s", v.name, ErrChecksum, got[:16], v.want[:min(16, len(v.want))])
			}
		}
	}
	return n, err
}
