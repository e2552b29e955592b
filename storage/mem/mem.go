package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/internal/body"
)

// Store is an in-memory storage.Store. The zero value is not usable; call
// New.
type Store struct {
	mu      sync.RWMutex
	objects map[string]object
}

// object is immutable once stored: Put replaces it, never mutates it.
type object struct {
	data []byte
	md   map[string]string
	mod  time.Time
}

var (
	_ storage.Store       = (*Store)(nil)
	_ storage.RangeGetter = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[string]object)}
}

// Put reads the whole body and then stores it under key. A failing body, a
// size that differs from opts.Size or a done context store nothing.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := storage.ValidateMetadata(opts.Metadata); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	data, err := io.ReadAll(body.New(ctx, r, body.Declared(opts.Size)))
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	// Checked again: the body may have ended just as the context was
	// cancelled, and a cancelled Put must not report success.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	obj := object{data: data, mod: time.Now()}
	if len(opts.Metadata) > 0 {
		obj.md = maps.Clone(opts.Metadata)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[key]; ok && opts.IfNotExists {
		return fmt.Errorf("put %s: %w", key, storage.ErrExists)
	}
	s.objects[key] = obj
	return nil
}

// Get opens the object. Reads fail once ctx is done.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.GetRange(ctx, key, 0, -1)
}

// GetRange opens length bytes of the object from offset; length < 0 means
// to the end. A range past the end of the object is cut short, down to
// empty.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	obj, err := s.lookup(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
	}
	data := obj.data[min(offset, int64(len(obj.data))):]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return &reader{ctx: ctx, r: bytes.NewReader(data)}, nil
}

// Stat returns the object's size, time and metadata.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	obj, err := s.lookup(ctx, "stat", key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(obj.data)), ModTime: obj.mod, Metadata: maps.Clone(obj.md)}, nil
}

func (s *Store) lookup(ctx context.Context, op, key string) (object, error) {
	if err := storage.ValidateKey(key); err != nil {
		return object{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return object{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	s.mu.RLock()
	obj, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return object{}, fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
	}
	return obj, nil
}

// List calls fn for a snapshot of the objects under prefix, in key order.
// fn may use the store.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	var infos []storage.ObjectInfo
	s.mu.RLock()
	for k, obj := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, storage.ObjectInfo{Key: k, Size: int64(len(obj.data)), ModTime: obj.mod, Metadata: maps.Clone(obj.md)})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b storage.ObjectInfo) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the keys; missing keys are ignored. All keys are
// validated before any is removed.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := storage.ValidateKey(k); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	if err := ctx.Err(); err != nil {
		if len(keys) > 0 {
			return fmt.Errorf("delete %s: %w", keys[0], err)
		}
		return fmt.Errorf("delete: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.objects, k)
	}
	return nil
}

// Close does nothing; the objects stay readable.
func (s *Store) Close() error { return nil }

// reader fails reads once its context is done.
type reader struct {
	ctx context.Context
	r   *bytes.Reader
}

// Read reads the object's bytes, or fails once the context is done.
func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Close does nothing.
func (r *reader) Close() error { return nil }
