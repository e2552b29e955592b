package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDigestRoundTripAndLegacySHA256(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("segment bytes "), 10000)
	d := NewDigester()
	d.Write(data)
	dg := d.Digest()
	if alg, v, err := ParseDigest(dg); err != nil || alg != DigestXXH64 || len(v) != 16 {
		t.Fatalf("new digest %q: %s %s %v", dg, alg, v, err)
	}
	if _, err := io.ReadAll(VerifyingReader(bytes.NewReader(data), "x", dg, int64(len(data)))); err != nil {
		t.Fatalf("own digest refused: %v", err)
	}
	// A flipped byte is caught.
	bad := bytes.Clone(data)
	bad[5000] ^= 1
	if _, err := io.ReadAll(VerifyingReader(bytes.NewReader(bad), "x", dg, -1)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("damaged data passed: %v", err)
	}
	// Objects of older versions record a bare SHA-256 under MetaSHA256.
	sum := sha256.Sum256(data)
	legacy := hex.EncodeToString(sum[:])
	od, ok := ObjectDigest(map[string]string{MetaSHA256: legacy})
	if !ok || od != "sha256-"+legacy {
		t.Fatalf("legacy metadata read as %q %v", od, ok)
	}
	got, err := DigestLike(bytes.NewReader(data), od)
	if err != nil || !SameDigest(got, od) || !SameDigest(got, legacy) {
		t.Fatalf("DigestLike %q %v, want %q", got, err, od)
	}
	if _, err := io.ReadAll(VerifyingReader(bytes.NewReader(data), "x", legacy, -1)); err != nil {
		t.Fatalf("bare SHA-256 refused: %v", err)
	}
	if _, err := io.ReadAll(VerifyingReader(bytes.NewReader(bad), "x", legacy, -1)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("damaged data passed the SHA-256: %v", err)
	}
	if d, ok := ObjectDigest(map[string]string{MetaDigest: dg, MetaSHA256: legacy}); !ok || d != dg {
		t.Fatalf("MetaDigest not preferred: %q", d)
	}
}

func TestDigestRefusesMalformed(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"", "xxh64-", "xxh64-0123", "xxh64-0123456789ABCDEF", "md5-00112233445566778899aabbccddeeff", strings.Repeat("g", 64), "sha256-" + strings.Repeat("0", 63)} {
		if _, _, err := ParseDigest(d); err == nil {
			t.Errorf("ParseDigest(%q) accepted", d)
		}
		if _, ok := ObjectDigest(map[string]string{MetaDigest: d}); ok {
			t.Errorf("ObjectDigest accepted %q", d)
		}
		if _, err := io.ReadAll(VerifyingReader(strings.NewReader("abc"), "obj", d, -1)); err == nil && d != "" {
			t.Errorf("VerifyingReader accepted digest %q", d)
		}
	}
	if _, ok := ObjectDigest(map[string]string{}); ok {
		t.Error("no metadata gave a digest")
	}
}

// TestCopyDigested: every byte arrives, in order, and is digested, however
// the reader splits its reads; a failing reader or writer fails the copy.
func TestCopyDigested(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(i*7 + i/1000)
	}
	for name, r := range map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(data) },
		"halves":   func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data[:5000])) },
	} {
		src := data
		if name == "one byte" {
			src = data[:5000]
		}
		var out bytes.Buffer
		d := NewDigester()
		n, err := CopyDigested(&out, d, r(), make([]byte, 1<<20))
		if err != nil || n != int64(len(src)) || !bytes.Equal(out.Bytes(), src) {
			t.Fatalf("%s: n %d, err %v, equal %t", name, n, err, bytes.Equal(out.Bytes(), src))
		}
		w := NewDigester()
		w.Write(src)
		if d.Digest() != w.Digest() {
			t.Fatalf("%s: digest %s, want %s", name, d.Digest(), w.Digest())
		}
	}
	boom := errors.New("boom")
	if _, err := CopyDigested(io.Discard, NewDigester(), io.MultiReader(bytes.NewReader(data[:100]), iotest.ErrReader(boom)), make([]byte, 64)); !errors.Is(err, boom) {
		t.Fatalf("reader error: %v", err)
	}
	if _, err := CopyDigested(errWriter{boom}, NewDigester(), bytes.NewReader(data), make([]byte, 64)); !errors.Is(err, boom) {
		t.Fatalf("writer error: %v", err)
	}
}

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }
