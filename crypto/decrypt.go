package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
)

// ErrWrongKey means that no loaded identity can decrypt an object: it was
// encrypted for other recipients.
var ErrWrongKey = errors.New("no loaded identity matches the object's recipients")

// ErrCorrupt means that an encrypted object is damaged, truncated, tampered
// with or not an age file at all. age authenticates every 64 KiB chunk, so
// no damaged byte is ever returned as plaintext.
var ErrCorrupt = errors.New("encrypted object is damaged or truncated")

// ageMagic starts every binary age file.
const ageMagic = "age-encryption.org/v1\n"

// IsEncrypted reports whether prefix, the first bytes of an object, starts
// like an age file ("age-encryption.org/v1\n"). prefix must hold at least
// those 22 bytes for the answer to be true.
func IsEncrypted(prefix []byte) bool {
	return bytes.HasPrefix(prefix, []byte(ageMagic))
}

// Decryptor decrypts streams with one or more identities. It holds secret
// keys: neither it nor any error from this package ever prints them. It is
// safe for concurrent use.
type Decryptor struct {
	identities []age.Identity
	recipients []string
}

// LoadIdentityFile reads an age identity file, as WriteIdentityFile or
// age-keygen write it: one identity ("AGE-SECRET-KEY-1...", or the
// post-quantum "AGE-SECRET-KEY-PQ-1...") per line, blank lines and "#"
// comments ignored. Errors name the file and line, never its content.
func LoadIdentityFile(path string) (*Decryptor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load identity file: %w", err)
	}
	defer f.Close()
	d, err := parseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("load identity file %s: %w", path, err)
	}
	return d, nil
}

// ParseIdentities reads identities from r, in the format of
// LoadIdentityFile.
func ParseIdentities(r io.Reader) (*Decryptor, error) {
	d, err := parseIdentities(r)
	if err != nil {
		return nil, fmt.Errorf("parse identities: %w", err)
	}
	return d, nil
}

// parseIdentities is ParseIdentities without the prefix on errors.
func parseIdentities(r io.Reader) (*Decryptor, error) {
	d := &Decryptor{}
	err := scanKeyLines(r, func(n int, line string) error {
		id, recipient, err := parseIdentity(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		d.identities = append(d.identities, id)
		d.recipients = append(d.recipients, recipient)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(d.identities) == 0 {
		return nil, errors.New("no identity in it: an identity file holds an AGE-SECRET-KEY-1... line, as walrus keygen or age-keygen write it")
	}
	return d, nil
}

// parseIdentity parses one identity line and returns the identity and its
// recipient. Its errors never include the line or age's own message, which
// could quote parts of it.
func parseIdentity(line string) (age.Identity, string, error) {
	const hint = "check that the line holds the whole key as written by walrus keygen or age-keygen"
	switch {
	case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
		id, err := age.ParseHybridIdentity(line)
		if err != nil {
			return nil, "", errors.New("malformed post-quantum identity (bad length, character or checksum): " + hint)
		}
		return id, id.Recipient().String(), nil
	case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, "", errors.New("malformed identity (bad length, character or checksum): " + hint)
		}
		return id, id.Recipient().String(), nil
	case strings.HasPrefix(line, "age1"):
		return nil, "", errors.New("this is a recipient (public key), not an identity: the identity file must hold the AGE-SECRET-KEY-1... line")
	case strings.HasPrefix(line, "AGE-PLUGIN-"):
		return nil, "", errors.New("plugin identities are not supported: use an X25519 identity (walrus keygen)")
	case strings.HasPrefix(line, "-----BEGIN"):
		return nil, "", errors.New("SSH and PEM keys are not supported: use an X25519 identity (walrus keygen)")
	default:
		return nil, "", errors.New("not an age identity (AGE-SECRET-KEY-1...): " + hint)
	}
}

// Recipients returns the recipients of the loaded identities, in file
// order, so that a configuration can check that its identity and
// recipients belong together. The caller owns the slice.
func (d *Decryptor) Recipients() []string {
	return append([]string(nil), d.recipients...)
}

// String describes the Decryptor by its public keys only.
func (d Decryptor) String() string {
	return fmt.Sprintf("age decryptor for %s", strings.Join(d.recipients, ", "))
}

// GoString is String, so that %#v does not print the secret keys.
func (d Decryptor) GoString() string { return d.String() }

// Decrypt reads the age header from src and returns a reader of the
// plaintext.
//
// If no identity matches, the error wraps ErrWrongKey. If the header is
// damaged or src is not an age file, the error wraps ErrCorrupt (damage to
// a recipient stanza can also show as ErrWrongKey). Read returns an error
// wrapping ErrCorrupt for a damaged, tampered or truncated body: age
// authenticates each 64 KiB chunk before returning any of it and requires
// the marked last chunk, so a cut shows as a chunk that fails to
// authenticate (it cannot be told from damage). An error of src itself is
// returned wrapped as it is, not as ErrCorrupt.
func (d *Decryptor) Decrypt(src io.Reader) (io.Reader, error) {
	s := &sourceReader{r: src}
	r, err := age.Decrypt(s, d.identities...)
	if err != nil {
		return nil, d.headerError(err, s)
	}
	return &decryptReader{r: r, src: s}, nil
}

// headerError classifies an error from reading the header.
func (d *Decryptor) headerError(err error, s *sourceReader) error {
	if s.err != nil {
		return fmt.Errorf("decrypt: read encrypted object: %w", s.err)
	}
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		return fmt.Errorf("decrypt: %w (the identity file holds the key of %s): the object was encrypted for other recipients: check encryption.identity_file", ErrWrongKey, strings.Join(d.recipients, ", "))
	}
	if s.n < int64(len(ageMagic)) || !IsEncrypted(s.head) {
		return fmt.Errorf("decrypt: %w: not an age-encrypted object (%w)", ErrCorrupt, err)
	}
	return fmt.Errorf("decrypt: %w: header: %w", ErrCorrupt, err)
}

// sourceReader keeps the first error of the source other than io.EOF, so
// that a failing network is not reported as a damaged object, and the
// first bytes read.
type sourceReader struct {
	r    io.Reader
	n    int64
	head []byte
	err  error
}

// Read reads from the source.
func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if k := min(len(ageMagic)-len(s.head), n); k > 0 {
		s.head = append(s.head, p[:k]...)
	}
	s.n += int64(n)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// decryptReader classifies age's body errors; its errors are sticky.
type decryptReader struct {
	r   io.Reader
	src *sourceReader
	err error
}

// Read returns plaintext.
func (r *decryptReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.r.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		r.err = io.EOF
	case r.src.err != nil:
		r.err = fmt.Errorf("decrypt: read encrypted object: %w", r.src.err)
	default:
		r.err = fmt.Errorf("decrypt: %w: %w", ErrCorrupt, err)
	}
	return n, r.err
}
