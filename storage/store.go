package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) by Get and Stat when no object is stored
// under the key.
var ErrNotFound = errors.New("object not found")

// ErrExists is returned (wrapped) by Put with IfNotExists when an object is
// already stored under the key.
var ErrExists = errors.New("object already exists")

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	// Key is the object's key relative to the repository root.
	Key string
	// Size is the stored size in bytes.
	Size int64
	// ModTime is when the object was stored, as the backend reports it.
	// Never use it to order backups (see TRAPS.md 24).
	ModTime time.Time
	// Metadata holds the metadata given to Put. Stat fills it; List may
	// leave it nil. Keys are lower case.
	Metadata map[string]string
}

// PutOptions modify a Put.
type PutOptions struct {
	// Metadata is stored with the object and returned by Stat. Keys must be
	// lower-case ASCII letters, digits and '-'; values printable ASCII.
	Metadata map[string]string
	// IfNotExists makes Put fail with ErrExists, storing nothing, when an
	// object already exists under the key.
	IfNotExists bool
	// Size is the body's length when known, or -1 (0 is treated as unknown
	// too unless the body is empty). Backends may use it to choose between a
	// single upload and a multipart upload.
	Size int64
}

// Store is a repository backend: what an object store offers, nothing more.
// All methods are safe for concurrent use.
type Store interface {
	// Put stores the whole of r under key. It returns nil only when the
	// object is durable; readers never observe a partial object. When r
	// fails, Put fails and stores nothing.
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) error
	// Get opens the object for reading. The caller must Close it. A short
	// read (io.ErrUnexpectedEOF) means the transfer broke, not that the
	// object is short.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's size and metadata.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, in
	// lexical key order, on the calling goroutine. An error from fn stops
	// the listing and is returned. Metadata may be nil.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the keys. Missing keys are not an error. It returns an
	// error naming the first key that could not be deleted.
	Delete(ctx context.Context, keys ...string) error
	// Close releases the backend's resources.
	Close() error
}

// RangeGetter is an optional interface for stores that can read part of an
// object.
type RangeGetter interface {
	// GetRange opens length bytes of the object starting at offset; length
	// < 0 means to the end.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
}

// Local is an optional interface for stores on a local file system,
// where a Stat costs microseconds and a List reads a whole directory: a
// caller looking for one of a few known keys should Stat each of them
// there rather than list a prefix (a wal/ directory holds every archived
// segment).
type Local interface {
	// Local reports whether the store is local in that sense.
	Local() bool
}

// IsLocal reports whether st says it is local (see Local).
func IsLocal(st Store) bool {
	l, ok := st.(Local)
	return ok && l.Local()
}

// MemoryBody is a Put body held in memory (*bytes.Reader and
// *io.SectionReader are such bodies). A backend may send the bytes from
// its current position to Size by offset instead of copying them into a
// buffer of its own, and a retry layer may pass it on as it is: reading
// it cannot fail, and a retry rewinds it.
type MemoryBody interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	// Size is the length of the whole body, from offset 0.
	Size() int64
}

// MemoryBodyRange returns the section of r that a Put sends, from its
// current position to its end, when r is a MemoryBody.
func MemoryBodyRange(r io.Reader) (*io.SectionReader, bool) {
	m, ok := r.(MemoryBody)
	if !ok {
		return nil, false
	}
	pos, err := m.Seek(0, io.SeekCurrent)
	if err != nil || pos > m.Size() {
		return nil, false
	}
	return io.NewSectionReader(m, pos, m.Size()-pos), true
}

// ValidateKey reports whether key is acceptable to every backend.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("invalid key %q: empty", key)
	}
	if len(key) > 1024 {
		return fmt.Errorf("invalid key %q: longer than 1024 bytes", key[:64]+"...")
	}
	if strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("invalid key %q: must not start or end with '/'", key)
	}
	for _, c := range strings.Split(key, "/") {
		switch {
		case c == "":
			return fmt.Errorf("invalid key %q: empty path component", key)
		case strings.HasPrefix(c, "."):
			return fmt.Errorf("invalid key %q: component %q starts with '.'", key, c)
		}
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("invalid key %q: control character or backslash", key)
		}
	}
	return nil
}

// ValidatePrefix reports whether prefix may be given to List: empty, or a
// key-like string that may end with '/'.
func ValidatePrefix(prefix string) error {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		if prefix == "" {
			return nil
		}
		return fmt.Errorf("invalid prefix %q", prefix)
	}
	if err := ValidateKey(p); err != nil {
		return fmt.Errorf("invalid prefix: %w", err)
	}
	return nil
}

// ValidateMetadata checks metadata keys and values for Put.
func ValidateMetadata(md map[string]string) error {
	for k, v := range md {
		if k == "" {
			return errors.New("invalid metadata: empty key")
		}
		for _, r := range k {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("invalid metadata key %q: use lower-case letters, digits and '-'", k)
			}
		}
		for _, r := range v {
			if r < 0x20 || r > 0x7e {
				return fmt.Errorf("invalid metadata value for %q: printable ASCII only", k)
			}
		}
	}
	return nil
}
