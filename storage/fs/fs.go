package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/internal/body"
)

const (
	// TempPrefix starts the name of every temp file that Put writes.
	TempPrefix = ".walrus-tmp-"
	// TempMaxAge is the age after which List removes a temp file that a
	// crashed writer left behind.
	TempMaxAge = time.Hour

	dirMode     = 0o700
	copyBufSize = 256 << 10
)

// Store is a filesystem storage.Store rooted at one directory.
type Store struct {
	root string
}

var (
	_ storage.Store       = (*Store)(nil)
	_ storage.RangeGetter = (*Store)(nil)
)

// New returns a Store rooted at root, which must be an absolute path. The
// directory is created with mode 0700 when it does not exist. New fails
// with ErrNotMounted when root lies under a mount point of /etc/fstab
// that nothing is mounted on.
func New(root string) (*Store, error) {
	return open(root, fstabPath, mountinfoPath)
}

// open is New, reading the mount tables at the paths given.
func open(root, fstabPath, mountinfoPath string) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("open repository %q: the path must be absolute", root)
	}
	root = filepath.Clean(root)
	if err := checkMounted(root, fstabPath, mountinfoPath); err != nil {
		return nil, fmt.Errorf("open repository %s: %w", root, err)
	}
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		if err := os.MkdirAll(root, dirMode); err != nil {
			return nil, fmt.Errorf("open repository %s: %w", root, err)
		}
		if err := inheritOwner(root, filepath.Dir(root)); err != nil {
			return nil, fmt.Errorf("open repository %s: %w", root, err)
		}
		if err := syncDir(filepath.Dir(root)); err != nil {
			return nil, fmt.Errorf("open repository %s: %w", root, err)
		}
	case err != nil:
		return nil, fmt.Errorf("open repository %s: %w", root, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("open repository %s: not a directory", root)
	}
	return &Store{root: root}, nil
}

// Root returns the repository directory.
func (s *Store) Root() string { return s.root }

func (s *Store) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// Put stores the body under key: temp file, fsync, rename (or link with
// IfNotExists), fsync of the directory. See the package documentation.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) (err error) {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := storage.ValidateMetadata(opts.Metadata); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	hdr, err := encodeHeader(opts.Metadata)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	dst := s.path(key)
	if opts.IfNotExists {
		// Not needed for correctness (the link decides), but it spares
		// writing a body that cannot be stored.
		if fi, err := os.Lstat(dst); err == nil && !fi.IsDir() {
			return fmt.Errorf("put %s: %w", key, storage.ErrExists)
		}
	}
	dir := filepath.Dir(dst)
	f, err := s.createTemp(dir)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	published := false
	defer func() {
		if err != nil && !published {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := writeObject(f, body.New(ctx, r, body.Declared(opts.Size)), hdr); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %s: sync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("put %s: close: %w", key, err)
	}
	// A Put whose context ended must not report success, nor publish.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if opts.IfNotExists {
		if err := os.Link(tmp, dst); err != nil {
			return fmt.Errorf("put %s: %w", key, linkError(dst, err))
		}
		published = true
		// A temp name that cannot be removed is only litter, which List
		// clears later.
		_ = os.Remove(tmp)
	} else {
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		published = true
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func linkError(dst string, err error) error {
	if errors.Is(err, iofs.ErrExist) {
		if fi, serr := os.Lstat(dst); serr == nil && fi.IsDir() {
			return fmt.Errorf("a directory is in the way: %w", err)
		}
		return storage.ErrExists
	}
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EXDEV) {
		return fmt.Errorf("create-only write needs hard links, which this filesystem refused (%w); put the repository on a local POSIX filesystem", err)
	}
	return err
}

// writeObject writes the header, when one is needed, and the body to f.
func writeObject(f *os.File, b *body.Reader, hdr []byte) error {
	head := make([]byte, len(magic))
	n, err := io.ReadFull(b, head)
	head = head[:n]
	eof := err == io.EOF || err == io.ErrUnexpectedEOF
	if err != nil && !eof {
		return err
	}
	if hdr == nil && n == len(magic) && string(head) == magic {
		// The object's own bytes look like a header: store an empty one
		// so that they are read back as data.
		hdr = emptyHeader()
	}
	if hdr != nil {
		if _, err := f.Write(hdr); err != nil {
			return err
		}
	}
	if _, err := f.Write(head); err != nil {
		return err
	}
	if eof {
		return nil
	}
	_, err = io.CopyBuffer(writerOnly{f}, b, make([]byte, copyBufSize))
	return err
}

// writerOnly hides os.File's ReaderFrom, whose generic path would use a
// small buffer.
type writerOnly struct{ io.Writer }

// createTemp creates a temp file in dir, creating dir first. It retries
// when a concurrent Delete removes a directory it has just made.
func (s *Store) createTemp(dir string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		err := s.mkdirs(dir)
		if err == nil {
			var f *os.File
			f, err = os.CreateTemp(dir, TempPrefix+"*")
			if err == nil {
				if err := inheritOwner(f.Name(), dir); err != nil {
					f.Close()
					os.Remove(f.Name())
					return nil, err
				}
				return f, nil
			}
		}
		if !errors.Is(err, iofs.ErrNotExist) || attempt >= 10 {
			return nil, err
		}
	}
}

// mkdirs creates dir and its missing parents below the root, mode 0700,
// fsyncing each parent that gains an entry.
func (s *Store) mkdirs(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	rel, err := filepath.Rel(s.root, dir)
	if err != nil || rel == "." {
		return err
	}
	cur := s.root
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		parent := cur
		cur = filepath.Join(cur, c)
		err := os.Mkdir(cur, dirMode)
		switch {
		case err == nil:
			if err := inheritOwner(cur, parent); err != nil {
				return err
			}
			if err := syncDir(parent); err != nil {
				return err
			}
		case errors.Is(err, iofs.ErrExist):
		default:
			return err
		}
	}
	return nil
}

// syncDir makes dir's entries durable. Filesystems that cannot fsync a
// directory (EINVAL) are accepted, as PostgreSQL does.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// open opens the object's file and reads its header.
func (s *Store) open(ctx context.Context, op, key string) (*os.File, object, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, object{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, object{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	p := s.path(key)
	// Stat before opening: a directory or a FIFO is not an object, and
	// opening a FIFO would block.
	fi, err := os.Stat(p)
	if err != nil {
		return nil, object{}, fmt.Errorf("%s %s: %w", op, key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, object{}, fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, object{}, fmt.Errorf("%s %s: %w", op, key, notFound(err))
	}
	// Stat again through the open file: the object may have been replaced
	// in between, and size and header must describe the same file.
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, object{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	obj, err := readHeader(f, fi)
	if err != nil {
		f.Close()
		return nil, object{}, fmt.Errorf("%s %s: %w", op, key, err)
	}
	return f, obj, nil
}

// notFound maps a missing file, or a path through a file, to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%w (%w)", storage.ErrNotFound, err)
	}
	return err
}

// Get opens the object. Reads fail once ctx is done.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.GetRange(ctx, key, 0, -1)
}

// GetRange opens length bytes of the object from offset; length < 0 means
// to the end. A range past the end of the object is cut short, down to
// empty.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
	}
	f, obj, err := s.open(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	start := min(offset, obj.size)
	n := obj.size - start
	if length >= 0 && length < n {
		n = length
	}
	return &fileReader{ctx: ctx, r: io.NewSectionReader(f, obj.dataOffset+start, n), f: f}, nil
}

// Stat returns the object's size, modification time and metadata.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	f, obj, err := s.open(ctx, "stat", key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	f.Close()
	return storage.ObjectInfo{Key: key, Size: obj.size, ModTime: obj.modTime, Metadata: obj.md}, nil
}

// List calls fn for every object under prefix, in key order. See the
// package documentation.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	dir, namePrefix := "", prefix
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir, namePrefix = prefix[:i], prefix[i+1:]
	}
	if err := s.walk(ctx, dir, namePrefix, fn); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

type entry struct {
	name string
	sort string // name, or name+"/" for a directory
	dir  bool
}

// walk lists the directory whose key is dir ("" for the root), visiting
// entries whose names start with namePrefix.
func (s *Store) walk(ctx context.Context, dir, namePrefix string, fn func(storage.ObjectInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(dir) > 1024 {
		return nil // deeper than any key: a symlink loop
	}
	abs := s.path(dir)
	if dir == "" {
		abs = s.root
	}
	des, err := os.ReadDir(abs)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, ".") {
			if strings.HasPrefix(name, TempPrefix) {
				removeStale(filepath.Join(abs, name), de)
			}
			continue
		}
		if !strings.HasPrefix(name, namePrefix) {
			continue
		}
		isDir := de.IsDir()
		if de.Type()&iofs.ModeSymlink != 0 {
			fi, err := os.Stat(filepath.Join(abs, name))
			if err != nil {
				continue // dangling
			}
			isDir = fi.IsDir()
		}
		e := entry{name: name, sort: name, dir: isDir}
		if isDir {
			e.sort += "/"
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.sort, b.sort) })
	for _, e := range entries {
		key := path.Join(dir, e.name)
		if e.dir {
			if err := s.walk(ctx, key, "", fn); err != nil {
				return err
			}
			continue
		}
		if storage.ValidateKey(key) != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, ok, err := s.listInfo(key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// listInfo describes the file of key for List. ok is false when it is not
// an object (gone since the directory was read, or not a regular file).
func (s *Store) listInfo(key string) (storage.ObjectInfo, bool, error) {
	p := s.path(key)
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return storage.ObjectInfo{}, false, nil
		}
		return storage.ObjectInfo{}, false, err
	}
	if !fi.Mode().IsRegular() {
		return storage.ObjectInfo{}, false, nil
	}
	info := storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}
	if fi.Size() < int64(len(magic)) {
		return info, true, nil // too short to carry a header
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return storage.ObjectInfo{}, false, nil
		}
		return storage.ObjectInfo{}, false, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return storage.ObjectInfo{}, false, err
	}
	obj, err := readHeader(f, fi)
	if err != nil {
		return storage.ObjectInfo{}, false, fmt.Errorf("%s: %w", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: obj.size, ModTime: obj.modTime, Metadata: obj.md}, true, nil
}

// removeStale removes a temp file left by a crashed writer. A live writer
// keeps its file's modification time recent; one stalled for longer than
// TempMaxAge loses its temp file and fails its Put.
func removeStale(p string, de iofs.DirEntry) {
	fi, err := de.Info()
	if err != nil || !fi.Mode().IsRegular() || time.Since(fi.ModTime()) < TempMaxAge {
		return
	}
	_ = os.Remove(p)
}

// Delete removes the keys and then the directories they leave empty.
// Missing keys, and keys that name a directory, are skipped. All keys are
// validated before any is removed.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := storage.ValidateKey(k); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	var dirs []string
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
		p := s.path(k)
		fi, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			return fmt.Errorf("delete %s: %w", k, err)
		}
		if fi.IsDir() {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", k, err)
		}
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := syncDir(d); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("delete: %w", err)
		}
		s.pruneEmpty(d)
	}
	return nil
}

// pruneEmpty removes dir and its parents below the root while they are
// empty. Removal fails harmlessly on a directory that is not empty.
func (s *Store) pruneEmpty(dir string) {
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if err := os.Remove(dir); err != nil {
			return
		}
		parent := filepath.Dir(dir)
		_ = syncDir(parent)
		dir = parent
	}
}

// Close does nothing: a Store holds no open files between calls.
func (s *Store) Close() error { return nil }

// Local reports true: see storage.Local.
func (s *Store) Local() bool { return true }

// fileReader reads an object's bytes and fails once its context is done.
type fileReader struct {
	ctx context.Context
	r   io.Reader
	f   *os.File
}

// Read reads the object's bytes, or fails once the context is done.
func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Close closes the file.
func (r *fileReader) Close() error { return r.f.Close() }
