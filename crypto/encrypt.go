package crypto

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
)

// Encryptor encrypts streams to a fixed set of recipients. It holds only
// public keys and is safe for concurrent use.
type Encryptor struct {
	recipients []age.Recipient
	names      []string
}

// NewEncryptor parses recipients ("age1..." X25519 public keys, or
// "age1pq1..." post-quantum hybrid ones, not mixed). An invalid recipient
// is an error that names it (recipients are public), unless it looks like
// a secret key, which is never repeated. Zero recipients is an error;
// duplicates count once.
func NewEncryptor(recipients []string) (*Encryptor, error) {
	if len(recipients) == 0 {
		return nil, errors.New("new encryptor: no recipients: set encryption.recipients or encryption.recipients_file to the age1... public key(s) that may decrypt")
	}
	e := &Encryptor{}
	seen := make(map[string]bool)
	var pq, classic int
	for i, s := range recipients {
		s = strings.TrimSpace(s)
		r, err := parseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("new encryptor: recipient %d: %w", i+1, err)
		}
		name := fmt.Sprint(r)
		if seen[name] {
			continue
		}
		seen[name] = true
		if _, ok := r.(*age.HybridRecipient); ok {
			pq++
		} else {
			classic++
		}
		e.recipients = append(e.recipients, r)
		e.names = append(e.names, name)
	}
	if pq > 0 && classic > 0 {
		return nil, errors.New("new encryptor: recipients mix post-quantum (age1pq1...) and X25519 (age1...) keys, which age refuses because the result would not resist quantum computers: use keys of one kind")
	}
	return e, nil
}

// Recipients returns the recipients, in the order given, without
// duplicates. The caller owns the slice.
func (e *Encryptor) Recipients() []string {
	return append([]string(nil), e.names...)
}

// String describes the Encryptor by its recipients.
func (e *Encryptor) String() string {
	return fmt.Sprintf("age encryptor for %s", strings.Join(e.names, ", "))
}

// Encrypt returns a writer whose plaintext is encrypted to dst as one age
// file. The header is written to dst before Encrypt returns. Close must be
// called: it encrypts and writes the last chunk, without which the object
// is truncated and will not decrypt; it does not close dst. After an error
// every later Write and Close returns it.
func (e *Encryptor) Encrypt(dst io.Writer) (io.WriteCloser, error) {
	w, err := age.Encrypt(dst, e.recipients...)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return &encryptWriter{w: w}, nil
}

// encryptWriter wraps age's writer with sticky, wrapped errors and a Close
// that can be repeated.
type encryptWriter struct {
	w      io.WriteCloser
	err    error
	closed bool
}

// Write encrypts p.
func (w *encryptWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("encrypt: write after close")
	}
	n, err := w.w.Write(p)
	if err != nil {
		w.err = fmt.Errorf("encrypt: %w", err)
		return n, w.err
	}
	return n, nil
}

// Close finishes the age file. Later calls return the same result.
func (w *encryptWriter) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		if err := w.w.Close(); err != nil {
			w.err = fmt.Errorf("encrypt: finish: %w", err)
		}
	}
	return w.err
}
