package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"

	"filippo.io/age"
)

// testKey is one generated identity and its recipient.
type testKey struct {
	identity, recipient string
}

// newKey generates a key.
func newKey(t testing.TB) testKey {
	t.Helper()
	id, rc, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{id, rc}
}

// decryptorFor returns a Decryptor holding k.
func decryptorFor(t testing.TB, k testKey) *Decryptor {
	t.Helper()
	d, err := ParseIdentities(strings.NewReader(k.identity + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// encryptorFor returns an Encryptor to the recipients of ks.
func encryptorFor(t testing.TB, ks ...testKey) *Encryptor {
	t.Helper()
	var rs []string
	for _, k := range ks {
		rs = append(rs, k.recipient)
	}
	e, err := NewEncryptor(rs)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// plaintext returns n bytes of mixed data.
func plaintext(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		if i%1000 < 500 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = "walrus archive "[i%15]
		}
	}
	return b
}

// encrypt encrypts data to e, writing it in chunks of the given size.
func encrypt(t testing.TB, e *Encryptor, data []byte, chunk int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := e.Encrypt(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if chunk <= 0 {
		chunk = max(1, len(data))
	}
	for p := data; len(p) > 0; p = p[min(chunk, len(p)):] {
		if _, err := w.Write(p[:min(chunk, len(p))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decrypt decrypts src fully with d, reading size bytes at a time.
func decrypt(d *Decryptor, src io.Reader, size int) ([]byte, error) {
	r, err := d.Decrypt(src)
	if err != nil {
		return nil, err
	}
	var out []byte
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	e, d := encryptorFor(t, k), decryptorFor(t, k)
	for _, n := range []int{0, 1, 65535, 65536, 65537, 2*65536 - 1, 2 * 65536, 1 << 20} {
		for _, chunk := range []int{0, 1, 7, 65536, 100_000} {
			if chunk == 1 && n > 65537 {
				continue
			}
			t.Run(fmt.Sprintf("%d/write%d", n, chunk), func(t *testing.T) {
				t.Parallel()
				data := plaintext(n, uint64(n))
				ct := encrypt(t, e, data, chunk)
				if !IsEncrypted(ct) {
					t.Fatal("IsEncrypted(ciphertext) = false")
				}
				for _, rs := range []int{1, 7, 4096, 65536, 1 << 20} {
					if rs == 1 && n > 65537 {
						continue
					}
					got, err := decrypt(d, bytes.NewReader(ct), rs)
					if err != nil {
						t.Fatalf("read %d at a time: %v", rs, err)
					}
					if !bytes.Equal(got, data) {
						t.Fatalf("read %d at a time: got %d bytes, want %d", rs, len(got), n)
					}
				}
				// A source that returns one byte per Read.
				got, err := decrypt(d, iotest.OneByteReader(bytes.NewReader(ct)), 4096)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("one-byte source: err=%v equal=%v", err, bytes.Equal(got, data))
				}
			})
		}
	}
}

func TestMultipleRecipients(t *testing.T) {
	t.Parallel()
	k1, k2, k3 := newKey(t), newKey(t), newKey(t)
	e := encryptorFor(t, k1, k2, k3)
	if got := e.Recipients(); len(got) != 3 || got[0] != k1.recipient || got[2] != k3.recipient {
		t.Fatalf("Recipients() = %v", got)
	}
	data := plaintext(200_000, 3)
	ct := encrypt(t, e, data, 0)
	for i, k := range []testKey{k1, k2, k3} {
		got, err := decrypt(decryptorFor(t, k), bytes.NewReader(ct), 32<<10)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("identity %d: err=%v equal=%v", i+1, err, bytes.Equal(got, data))
		}
	}
	// A Decryptor holding several identities, only one of them a recipient.
	other := newKey(t)
	d, err := ParseIdentities(strings.NewReader("# keys\n" + other.identity + "\n\n" + k2.identity + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Recipients(); len(got) != 2 || got[0] != other.recipient || got[1] != k2.recipient {
		t.Fatalf("Decryptor.Recipients() = %v", got)
	}
	if got, err := decrypt(d, bytes.NewReader(ct), 32<<10); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("two identities: err=%v", err)
	}
}

func TestDuplicateRecipients(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	e, err := NewEncryptor([]string{k.recipient, " " + k.recipient + " "})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Recipients(); len(got) != 1 {
		t.Fatalf("Recipients() = %v, want one", got)
	}
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	k, other := newKey(t), newKey(t)
	ct := encrypt(t, encryptorFor(t, k), plaintext(1000, 1), 0)
	_, err := decryptorFor(t, other).Decrypt(bytes.NewReader(ct))
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("err = %v, want ErrWrongKey", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong key also reported as corrupt: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"encrypted for other recipients", "encryption.identity_file", other.recipient} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	assertNoSecret(t, msg, k, other)
}

// flip returns a copy of b with byte i changed.
func flip(b []byte, i int, mask byte) []byte {
	c := bytes.Clone(b)
	c[i] ^= mask
	return c
}

func TestCorrupt(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	e, d := encryptorFor(t, k), decryptorFor(t, k)
	for _, n := range []int{0, 1, 65536, 65537, 200_000} {
		data := plaintext(n, uint64(n)+7)
		ct := encrypt(t, e, data, 0)
		hdrEnd := bytes.Index(ct, []byte("\n---")) + 1
		hdrEnd += bytes.IndexByte(ct[hdrEnd:], '\n') + 1
		var positions []int
		if len(ct) <= 1024 {
			for i := range ct {
				positions = append(positions, i)
			}
		} else {
			for i := range hdrEnd + 32 { // the whole header, the nonce, the first chunk's start
				positions = append(positions, i)
			}
			for _, off := range []int{1, 2, 16, 17, 100} {
				positions = append(positions, len(ct)-off) // last chunk and its tag
			}
			for i := 1; i < 50; i++ {
				positions = append(positions, hdrEnd+i*(len(ct)-hdrEnd)/50)
			}
		}
		for _, pos := range positions {
			for _, mask := range []byte{0x01, 0x80} {
				bad := flip(ct, pos, mask)
				got, err := decrypt(d, bytes.NewReader(bad), 4096)
				if err == nil {
					t.Fatalf("%d bytes, byte %d of %d (header ends at %d) ^%#x: no error", n, pos, len(ct), hdrEnd, mask)
				}
				if !errors.Is(err, ErrCorrupt) && !(pos < hdrEnd && errors.Is(err, ErrWrongKey)) {
					t.Fatalf("byte %d: err = %v, want ErrCorrupt (or ErrWrongKey in the header)", pos, err)
				}
				if !bytes.HasPrefix(data, got) {
					t.Fatalf("byte %d: returned plaintext that is not a prefix of the original", pos)
				}
			}
		}
	}
}

func TestTruncated(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	e, d := encryptorFor(t, k), decryptorFor(t, k)
	for _, n := range []int{0, 1, 65536, 65537, 3 * 65536} {
		data := plaintext(n, 11)
		ct := encrypt(t, e, data, 0)
		cuts := []int{0, 1, 10, 21, 22, 50}
		// Around every chunk boundary of the payload, and the end.
		payload := bytes.Index(ct, []byte("\n---")) + 1
		payload += bytes.IndexByte(ct[payload:], '\n') + 1 + 16
		for c := payload; c < len(ct)+65536; c += 65536 + 16 {
			cuts = append(cuts, c-1, c, c+1)
		}
		cuts = append(cuts, len(ct)-1, len(ct)-16, len(ct)-17)
		for _, cut := range cuts {
			if cut < 0 || cut >= len(ct) {
				continue
			}
			_, err := decrypt(d, bytes.NewReader(ct[:cut]), 8192)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%d bytes cut to %d of %d: err = %v, want ErrCorrupt", n, cut, len(ct), err)
			}
		}
	}
}

func TestTrailingData(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	ct := encrypt(t, encryptorFor(t, k), plaintext(70000, 1), 0)
	_, err := decrypt(decryptorFor(t, k), bytes.NewReader(append(ct, 'x')), 8192)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestNotEncrypted(t *testing.T) {
	t.Parallel()
	d := decryptorFor(t, newKey(t))
	for _, src := range []string{"", "plain text\n", "\x04\x22\x4d\x18lz4 frame"} {
		_, err := d.Decrypt(strings.NewReader(src))
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Decrypt(%q) = %v, want ErrCorrupt", src, err)
		}
	}
}

// TestSourceError checks that a failing source is reported as itself.
func TestSourceError(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	e, d := encryptorFor(t, k), decryptorFor(t, k)
	ct := encrypt(t, e, plaintext(300_000, 2), 0)
	errNet := errors.New("connection reset")
	for _, at := range []int{0, 30, 200, 100_000, len(ct) - 1, len(ct)} {
		src := io.MultiReader(bytes.NewReader(ct[:at]), iotest.ErrReader(errNet))
		_, err := decrypt(d, src, 8192)
		if !errors.Is(err, errNet) {
			t.Errorf("source fails after %d bytes: err = %v, want it wrapped", at, err)
		}
		if errors.Is(err, ErrCorrupt) {
			t.Errorf("source fails after %d bytes: reported as corrupt: %v", at, err)
		}
	}
}

func TestCiphertextHidesPlaintext(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	marker := []byte("WALRUS-PLAINTEXT-MARKER-7f3a")
	data := bytes.Repeat(append(marker, ' '), 10000)
	ct := encrypt(t, encryptorFor(t, k), data, 0)
	if bytes.Contains(ct, marker) || bytes.Contains(ct, marker[:12]) {
		t.Fatal("ciphertext contains the plaintext marker")
	}
	if len(ct) < len(data) {
		t.Fatal("ciphertext shorter than plaintext")
	}
}

func TestIsEncrypted(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"age-encryption.org/v1\n-> X25519 abc\n", true},
		{"age-encryption.org/v1\n", true},
		{"age-encryption.org/v1", false},
		{"age-encryption.org/v2\n", false},
		{"-----BEGIN AGE ENCRYPTED FILE-----", false},
		{"", false},
		{"\x04\x22\x4d\x18", false},
	} {
		if got := IsEncrypted([]byte(tt.in)); got != tt.want {
			t.Errorf("IsEncrypted(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestEncryptWriter(t *testing.T) {
	t.Parallel()
	e := encryptorFor(t, newKey(t))
	errDisk := errors.New("disk full")
	// The destination fails after the header: a later write or Close fails.
	fw := &failAfter{n: 300, err: errDisk}
	w, err := e.Encrypt(fw)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := w.Write(make([]byte, 200_000))
	cerr := w.Close()
	if !errors.Is(werr, errDisk) && !errors.Is(cerr, errDisk) {
		t.Fatalf("Write=%v Close=%v, want %v", werr, cerr, errDisk)
	}
	if cerr == nil {
		t.Fatal("Close succeeded after a failed write")
	}
	// The destination fails at once: Encrypt fails.
	if _, err := e.Encrypt(&failAfter{err: errDisk}); !errors.Is(err, errDisk) {
		t.Fatalf("Encrypt to a failing destination = %v", err)
	}
	// Write after Close, and Close twice.
	w, _ = e.Encrypt(io.Discard)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// failAfter accepts n bytes, then fails.
type failAfter struct {
	n   int
	err error
}

// Write accepts what is left of n, then fails.
func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

func TestNewEncryptorErrors(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	if _, err := NewEncryptor(nil); err == nil || !strings.Contains(err.Error(), "recipients") {
		t.Errorf("no recipients: %v", err)
	}
	i := len(k.recipient) - 10
	bad := k.recipient[:i] + strings.ToLower(flipChar(strings.ToUpper(k.recipient)[i])) + k.recipient[i+1:] // checksum broken
	for _, r := range []string{"age1notarecipient", bad, "ssh-ed25519 AAAAC3Nz", "hello", ""} {
		_, err := NewEncryptor([]string{k.recipient, r})
		if err == nil {
			t.Errorf("NewEncryptor accepted %q", r)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", r)) {
			t.Errorf("error %q does not name %q", err, r)
		}
		if !strings.Contains(err.Error(), "recipient 2") {
			t.Errorf("error %q does not say which recipient", err)
		}
	}
	// A secret key given as a recipient is never repeated.
	_, err := NewEncryptor([]string{k.identity})
	if err == nil {
		t.Fatal("NewEncryptor accepted a secret key")
	}
	assertNoSecret(t, err.Error(), k)
	// Post-quantum and classic recipients do not mix.
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewEncryptor([]string{k.recipient, pq.Recipient().String()}); err == nil {
		t.Error("NewEncryptor mixed post-quantum and X25519 recipients")
	}
}

func TestPostQuantum(t *testing.T) {
	t.Parallel()
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEncryptor([]string{pq.Recipient().String()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseIdentities(strings.NewReader(pq.String() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Recipients(); len(got) != 1 || got[0] != pq.Recipient().String() {
		t.Fatalf("Recipients() = %v", got)
	}
	data := plaintext(70000, 5)
	got, err := decrypt(d, bytes.NewReader(encrypt(t, e, data, 0)), 8192)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("err=%v", err)
	}
}

func TestWriteIdentityFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "walrus.key")
	recipient, err := WriteIdentityFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	text, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "# created: ") || lines[1] != "# public key: "+recipient || !strings.HasPrefix(lines[2], "AGE-SECRET-KEY-1") {
		t.Errorf("file content has the wrong shape:\n%s", strings.Join(lines[:2], "\n"))
	}
	// It loads back, and its identity matches the recipient returned.
	d, err := LoadIdentityFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Recipients(); len(got) != 1 || got[0] != recipient {
		t.Fatalf("loaded recipients %v, want [%s]", got, recipient)
	}
	e, err := NewEncryptor([]string{recipient})
	if err != nil {
		t.Fatal(err)
	}
	data := plaintext(1000, 1)
	if got, err := decrypt(d, bytes.NewReader(encrypt(t, e, data, 0)), 100); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("decrypt with the written identity: %v", err)
	}
	// age itself reads the file.
	f, _ := os.Open(path)
	defer f.Close()
	if _, err := age.ParseIdentities(f); err != nil {
		t.Fatalf("age cannot read the identity file: %v", err)
	}
	// Never overwrites.
	if _, err := WriteIdentityFile(path); err == nil || !errors.Is(err, os.ErrExist) {
		t.Fatalf("second WriteIdentityFile = %v, want an error wrapping os.ErrExist", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, text) {
		t.Fatal("the existing identity file was changed")
	}
	// A missing directory is an error and leaves nothing behind.
	if _, err := WriteIdentityFile(filepath.Join(dir, "no", "such", "key")); err == nil {
		t.Fatal("WriteIdentityFile into a missing directory succeeded")
	}
}

func TestReadRecipientsFile(t *testing.T) {
	t.Parallel()
	k1, k2 := newKey(t), newKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "recipients.txt")
	text := "# backup readers\n\n" + k1.recipient + "\r\n   \n# the second key\n  " + k2.recipient + "  \n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecipientsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != k1.recipient || got[1] != k2.recipient {
		t.Fatalf("ReadRecipientsFile = %v", got)
	}
	if _, err := NewEncryptor(got); err != nil {
		t.Fatal(err)
	}

	for name, tt := range map[string]struct {
		text string
		want []string // substrings of the error
	}{
		"empty":     {"# nothing here\n\n", []string{"no recipient"}},
		"invalid":   {k1.recipient + "\nage1bogus\n", []string{"line 2", `"age1bogus"`}},
		"secret":    {k1.identity + "\n", []string{"line 1", "secret key"}},
		"not a key": {"hello world\n", []string{"line 1", `"hello world"`}},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, []byte(tt.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadRecipientsFile(p)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		for _, w := range append(tt.want, p) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", name, err, w)
			}
		}
		assertNoSecret(t, err.Error(), k1)
	}
	if _, err := ReadRecipientsFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadIdentityFileErrors(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	dir := t.TempDir()
	// A key with one character changed (checksum fails), one cut short, and
	// one with a character outside the alphabet.
	damaged := k.identity[:20] + flipChar(k.identity[20]) + k.identity[21:]
	for name, text := range map[string]string{
		"checksum":  "# created: now\n" + damaged + "\n",
		"short":     k.identity[:40] + "\n",
		"charset":   k.identity[:30] + "b" + k.identity[31:] + "\n", // 'b' is not in bech32
		"lowercase": strings.ToLower(k.identity[:40]) + "\n",
		"recipient": k.recipient + "\n",
		"empty":     "# only a comment\n",
		"pem":       "-----BEGIN OPENSSH PRIVATE KEY-----\n" + k.identity[16:] + "\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadIdentityFile(p)
		if err == nil {
			t.Errorf("%s: loaded", name)
			continue
		}
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
		assertNoSecret(t, err.Error(), k)
		for _, line := range strings.Split(text, "\n") {
			if len(line) > 8 && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line[8:]) {
				t.Errorf("%s: error %q quotes the file", name, err)
			}
		}
	}
	if _, err := LoadIdentityFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// flipChar returns another bech32 character than c.
func flipChar(c byte) string {
	if c == 'Q' {
		return "P"
	}
	return "Q"
}

// secretRE matches the start of an encoded secret key.
var secretRE = regexp.MustCompile(`AGE-SECRET-KEY-(PQ-)?1[023456789ACDEFGHJKLMNPQRSTUVWXYZ]{8}`)

// assertNoSecret fails if s holds any secret key of ks, or a long piece of
// one.
func assertNoSecret(t *testing.T, s string, ks ...testKey) {
	t.Helper()
	if secretRE.MatchString(strings.ToUpper(s)) {
		t.Errorf("text holds secret key material: %q", s)
	}
	for _, k := range ks {
		body := strings.TrimPrefix(k.identity, "AGE-SECRET-KEY-1")
		for i := 0; i+10 <= len(body); i++ {
			if strings.Contains(strings.ToUpper(s), body[i:i+10]) {
				t.Errorf("text holds part of a secret key: %q", s)
				return
			}
		}
	}
}

func TestNoSecretInFormatting(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	d := decryptorFor(t, k)
	e := encryptorFor(t, k)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{d, *d, e} {
			s := fmt.Sprintf(verb, v)
			assertNoSecret(t, s, k)
			// %x prints hex; check the hex of the key too.
			if strings.Contains(s, fmt.Sprintf("%x", k.identity[16:30])) {
				t.Errorf("%s of %T holds the key in hex", verb, v)
			}
		}
	}
	if s := fmt.Sprint(d); !strings.Contains(s, k.recipient) {
		t.Errorf("String() = %q, want it to name the recipient", s)
	}
	j, _ := json.Marshal(d)
	assertNoSecret(t, string(j), k)
}
