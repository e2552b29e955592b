package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
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
