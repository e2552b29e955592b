package repo

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// A digest is a checksum written as "<algorithm>-<lower-case hex>":
//
//   - "xxh64-" and 16 hex digits: XXH64 (seed 0) of an object's
//     plaintext. walrus records it with every object it writes
//     (MetaDigest) so that a command can compare a local file with a
//     stored object without the identity, and checks it on every read.
//     It is not cryptographic and need not be: it detects damage and
//     mix-ups, while age's AEAD authenticates encrypted objects and a
//     backup's manifest binds each part with the SHA-256 of its stored
//     bytes. XXH64 runs at memory speed, where SHA-256 of every WAL
//     segment cost an eighth of wal-push's CPU.
//   - "sha256-" and 64 hex digits: SHA-256. Objects written before
//     digests carried a bare hex SHA-256 of their plaintext under
//     MetaSHA256; ObjectDigest reads it as this form.
//
// A bare 64-digit hex string is read as a SHA-256 digest wherever a digest
// is expected (the form manifests record).

// MetaDigest is the metadata key holding the digest of an object's
// plaintext.
const MetaDigest = "walrus-digest"

// Digest algorithms.
const (
	// DigestXXH64 is the algorithm of new plaintext digests.
	DigestXXH64 = "xxh64"
	// DigestSHA256 is SHA-256.
	DigestSHA256 = "sha256"
)

// NewDigester returns a Digester of the algorithm new plaintext digests
// use (XXH64).
func NewDigester() Digester { return Digester{alg: DigestXXH64, h: xxhash.New()} }

// Digester computes a digest: write the data, then call Digest.
type Digester struct {
	alg string
	h   hash.Hash
}

// Write adds p to the digest; it never fails.
func (d Digester) Write(p []byte) (int, error) { return d.h.Write(p) }

// Digest returns the digest of what was written.
func (d Digester) Digest() string { return d.alg + "-" + hex.EncodeToString(d.h.Sum(nil)) }

// CopyDigested copies r to w, to its end, in reads of len(buf) bytes,
// adding each read to d before writing it to w (while it is still in the
// CPU's caches). It returns the number of bytes copied. With a buf of
// compress.BlockSize bytes the lz4 codec compresses straight from buf;
// io.Copy's 32 KiB reads made it copy every byte into a block first.
func CopyDigested(w io.Writer, d Digester, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			d.Write(buf[:m])
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// DigesterLike returns a Digester of the algorithm of the digest want, or
// NewDigester's when want is "".
func DigesterLike(want string) (Digester, error) {
	if want == "" {
		return NewDigester(), nil
	}
	alg, _, err := ParseDigest(want)
	if err != nil {
		return Digester{}, err
	}
	switch alg {
	case DigestXXH64:
		return Digester{alg: alg, h: xxhash.New()}, nil
	default:
		return Digester{alg: alg, h: sha256.New()}, nil
	}
}

// ParseDigest splits a digest into its algorithm and hex value and checks
// both. A bare 64-digit hex string is a SHA-256 digest.
func ParseDigest(d string) (alg, value string, err error) {
	alg, value, ok := strings.Cut(d, "-")
	if !ok {
		alg, value = DigestSHA256, d
	}
	want := 0
	switch alg {
	case DigestXXH64:
		want = 16
	case DigestSHA256:
		want = 64
	default:
		return "", "", fmt.Errorf("unknown checksum %q: this walrus does not know its algorithm; use a newer walrus", short(d))
	}
	if len(value) != want || strings.ToLower(value) != value {
		return "", "", fmt.Errorf("malformed %s checksum %q", alg, short(d))
	}
	if _, err := hex.DecodeString(value); err != nil {
		return "", "", fmt.Errorf("malformed %s checksum %q", alg, short(d))
	}
	return alg, value, nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ObjectDigest returns the plaintext digest recorded in an object's
// metadata: MetaDigest, or the bare SHA-256 of older objects (MetaSHA256)
// as a "sha256-" digest. ok is false when neither is recorded or the
// value is malformed.
func ObjectDigest(md map[string]string) (digest string, ok bool) {
	if d, found := md[MetaDigest]; found {
		_, _, err := ParseDigest(d)
		return d, err == nil
	}
	if s, found := md[MetaSHA256]; found {
		d := DigestSHA256 + "-" + s
		_, _, err := ParseDigest(d)
		return d, err == nil
	}
	return "", false
}

// DigestLike computes the digest of r with the algorithm of like ("": the
// algorithm of new objects), so that a local file can be compared with an
// object whatever digest it records.
func DigestLike(r io.Reader, like string) (string, error) {
	d, err := DigesterLike(like)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(d, r); err != nil {
		return "", err
	}
	return d.Digest(), nil
}

// SameDigest reports whether two digests are equal, reading a bare hex
// SHA-256 and its "sha256-" form as the same.
func SameDigest(a, b string) bool {
	aa, av, err1 := ParseDigest(a)
	ba, bv, err2 := ParseDigest(b)
	return err1 == nil && err2 == nil && aa == ba && av == bv
}

// VerifyingReader wraps r and, at EOF, compares the digest and size of
// everything read with want (a digest; "" leaves the content unchecked)
// and wantSize (-1: unchecked). A mismatch, or a want that is not a
// digest, is returned from Read instead of io.EOF.
func VerifyingReader(r io.Reader, name, want string, wantSize int64) io.Reader {
	v := &verifyReader{r: r, name: name, want: want, wantSize: wantSize}
	if want != "" {
		d, err := DigesterLike(want)
		if err != nil {
			v.err = fmt.Errorf("%s: %w", name, err)
		} else {
			v.d = &d
		}
	}
	return v
}

type verifyReader struct {
	r        io.Reader
	d        *Digester
	err      error
	n        int64
	name     string
	want     string
	wantSize int64
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	if v.d != nil {
		v.d.Write(p[:n])
	}
	v.n += int64(n)
	if err == io.EOF {
		if v.wantSize >= 0 && v.n != v.wantSize {
			return n, fmt.Errorf("%s: %w: %d bytes, expected %d", v.name, ErrChecksum, v.n, v.wantSize)
		}
		if v.d != nil {
			if got := v.d.Digest(); !SameDigest(got, v.want) {
				return n, fmt.Errorf("%s: %w: %.24s, expected %.24s", v.name, ErrChecksum, got, v.want)
			}
		}
	}
	return n, err
}
