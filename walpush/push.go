package walpush

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// Options configure a push.
type Options struct {
	// Store is the repository backend.
	Store storage.Store
	// Encoder compresses and encrypts.
	Encoder *repo.Encoder
	// PGData is the data directory, used to read the system identifier
	// for .history and .backup files. Empty: derived from the file's path
	// (PostgreSQL passes pg_wal/NAME relative to the data directory).
	PGData string
}

// Result describes a finished push.
type Result struct {
	// Name is the WAL file name.
	Name string
	// Key is the object's key.
	Key string
	// AlreadyStored is true when an identical object was found.
	AlreadyStored bool
	// RawSize and StoredSize are the plaintext and stored sizes.
	RawSize, StoredSize int64
}

// ErrConflict means a different file is already archived under the name.
var ErrConflict = errors.New("a different file is already archived under this name")

// Push archives the WAL file at path.
func Push(ctx context.Context, path string, opts Options) (Result, error) {
	name := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return Result{}, fmt.Errorf("wal-push %s: not a regular file", path)
	}
	sysid, err := systemIdentifier(f, fi.Size(), name, path, opts.PGData)
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	sum, err := checksum(f)
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: read: %w", name, err)
	}
	if _, err := repo.EnsureIdentity(ctx, opts.Store, sysid, opts.Encoder.Encrypted()); err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	base := repo.WALBase(name)
	if res, done, err := compareExisting(ctx, opts, base, name, sum, fi.Size()); done || err != nil {
		return res, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	w, err := opts.Encoder.Put(ctx, opts.Store, base, f, storage.PutOptions{
		IfNotExists: true,
		Metadata:    map[string]string{repo.MetaSHA256: sum, repo.MetaSize: strconv.FormatInt(fi.Size(), 10)},
	})
	if errors.Is(err, storage.ErrExists) {
		// Someone stored it between our look and our write.
		if res, done, err := compareExisting(ctx, opts, base, name, sum, fi.Size()); done || err != nil {
			return res, err
		}
	}
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	if w.SHA256 != sum || w.RawSize != fi.Size() {
		// The file changed while we read it: never leave an object whose
		// recorded checksum does not match its content.
		_ = opts.Store.Delete(ctx, w.Key)
		return Result{}, fmt.Errorf("wal-push %s: the file changed while it was being archived; PostgreSQL will retry", name)
	}
	return Result{Name: name, Key: w.Key, RawSize: w.RawSize, StoredSize: w.StoredSize}, nil
}

// compareExisting looks for an object stored under base. done is true when
// one exists (with err set when its content differs).
func compareExisting(ctx context.Context, opts Options, base, name, sum string, size int64) (Result, bool, error) {
	info, err := repo.FindObject(ctx, opts.Store, base, opts.Encoder.Suffix())
	if errors.Is(err, storage.ErrNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, true, fmt.Errorf("wal-push %s: %w", name, err)
	}
	stored := info.Metadata[repo.MetaSHA256]
	if stored == "" {
		return Result{}, true, fmt.Errorf("wal-push %s: %w: %s has no recorded checksum; inspect it and remove it by hand if it is wrong", name, ErrConflict, info.Key)
	}
	if stored != sum {
		return Result{}, true, fmt.Errorf("wal-push %s: %w (%s, sha256 %.12s, this file %.12s); the stored object was left untouched: check that only one cluster archives into this repository", name, ErrConflict, info.Key, stored, sum)
	}
	return Result{Name: name, Key: info.Key, AlreadyStored: true, RawSize: size, StoredSize: info.Size}, true, nil
}

func checksum(f *os.File) (string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// systemIdentifier reads the cluster's system identifier: from the
// segment header for segments and .partial files, from pg_control for
// other WAL files.
func systemIdentifier(f *os.File, size int64, name, path, pgdata string) (uint64, error) {
	wf, err := pg.ParseWALFileName(name, pg.MinWALSegSize)
	if err != nil {
		return 0, fmt.Errorf("not a WAL file name: %w", err)
	}
	if wf.Kind == pg.SegmentFile || wf.Kind == pg.PartialFile {
		hdr := make([]byte, 64)
		if _, err := io.ReadFull(f, hdr); err != nil {
			return 0, fmt.Errorf("read segment header: %w", err)
		}
		h, err := pg.ParseSegmentHeader(hdr)
		if err != nil {
			return 0, fmt.Errorf("segment header: %w", err)
		}
		if wf.Kind == pg.SegmentFile && int64(h.SegSize) != size {
			return 0, fmt.Errorf("file is %d bytes but its header says segments are %d bytes: refusing a truncated or foreign segment", size, h.SegSize)
		}
		return h.SystemIdentifier, nil
	}
	dirs := []string{}
	if pgdata != "" {
		dirs = append(dirs, pgdata)
	}
	if abs, err := filepath.Abs(path); err == nil {
		dirs = append(dirs, filepath.Dir(filepath.Dir(abs)))
	}
	var lastErr error
	for _, d := range dirs {
		cd, err := pg.ReadControlFile(filepath.Join(d, "global", "pg_control"))
		if err == nil {
			return cd.SystemIdentifier, nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("cannot tell which cluster %s belongs to (%v): set pgdata (WALRUS_PGDATA or PGDATA)", name, lastErr)
}
