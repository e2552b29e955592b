package crypto

import (
	"bytes"
	"io"
	"testing"
)

// benchSize is a WAL segment's worth of data.
const benchSize = 16 << 20

// BenchmarkEncrypt encrypts 16 MiB to one recipient; MB/s counts plaintext.
func BenchmarkEncrypt(b *testing.B) {
	e := encryptorFor(b, newKey(b))
	data := plaintext(benchSize, 1)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		w, err := e.Encrypt(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		for p := data; len(p) > 0; p = p[32<<10:] {
			if _, err := w.Write(p[:32<<10]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecrypt decrypts 16 MiB; MB/s counts plaintext.
func BenchmarkDecrypt(b *testing.B) {
	k := newKey(b)
	d := decryptorFor(b, k)
	ct := encrypt(b, encryptorFor(b, k), plaintext(benchSize, 1), 0)
	buf := make([]byte, 32<<10)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		r, err := d.Decrypt(bytes.NewReader(ct))
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.CopyBuffer(io.Discard, r, buf); err != nil || n != benchSize {
			b.Fatalf("%d bytes, %v", n, err)
		}
	}
}
