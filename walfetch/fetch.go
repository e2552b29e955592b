package walfetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// ErrNotFound means the repository holds no such WAL file.
var ErrNotFound = errors.New("not in the archive")

// Options configure a fetch.
type Options struct {
	// Store is the repository backend.
	Store storage.Store
	// Decoder decrypts and decompresses.
	Decoder *repo.Decoder
	// PreferredSuffix is tried first when looking for the object (the
	// current configuration's suffix), saving a listing.
	PreferredSuffix string
}

// Result describes a finished fetch.
type Result struct {
	Key  string
	Size int64
}

// Fetch restores the WAL file name into dest.
func Fetch(ctx context.Context, name, dest string, opts Options) (Result, error) {
	if _, err := pg.ParseWALFileName(name, pg.MinWALSegSize); err != nil {
		return Result{}, fmt.Errorf("wal-fetch %s: not a WAL file name: %w", name, err)
	}
	info, err := repo.FindObject(ctx, opts.Store, repo.WALBase(name), opts.PreferredSuffix)
	if errors.Is(err, storage.ErrNotFound) {
		return Result{}, fmt.Errorf("wal-fetch %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Result{}, fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	wantSize := int64(-1)
	if s, ok := info.Metadata[repo.MetaSize]; ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			wantSize = n
		}
	}
	want := info.Metadata[repo.MetaSHA256]
	rc, err := opts.Decoder.Open(ctx, opts.Store, info.Key)
	if errors.Is(err, storage.ErrNotFound) {
		// Deleted between Stat and Get: still a verified absence.
		return Result{}, fmt.Errorf("wal-fetch %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Result{}, fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	defer rc.Close()
	n, err := WriteAtomic(dest, repo.VerifyingReader(rc, info.Key, want, wantSize))
	if err != nil {
		return Result{}, fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return Result{Key: info.Key, Size: n}, nil
}

// WriteAtomic writes r to dest through a temporary file in the same
// directory: write, fsync, rename, fsync the directory. On error nothing is
// left at dest or at the temporary name.
func WriteAtomic(dest string, r io.Reader) (int64, error) {
	dir := filepath.Dir(dest)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".walrus-*")
	if err != nil {
		return 0, fmt.Errorf("create temporary file for %s: %w", dest, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return 0, fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	n, err := io.Copy(tmp, r)
	if err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return 0, fmt.Errorf("rename to %s: %w", dest, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return n, fmt.Errorf("fsync directory %s: %w", dir, err)
		}
	}
	return n, nil
}
