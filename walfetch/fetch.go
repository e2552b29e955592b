package walfetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	// Prefetch, when enabled, serves segments from the prefetch directory
	// and starts the background prefetcher after each segment.
	Prefetch Prefetch
	// Logf, if not nil, receives a line for every prefetch decision that
	// an operator may want to see (a file that failed verification, a
	// prefetcher that could not start). It never changes the outcome.
	Logf func(format string, args ...any)
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// Result describes a finished fetch.
type Result struct {
	// Key is the object restored, or "" when Prefetched.
	Key string
	// Size is the number of bytes written to the destination.
	Size int64
	// Prefetched is true when the file came from the prefetch directory.
	Prefetched bool
}

// Fetch restores the WAL file name into dest. With opts.Prefetch enabled
// and name a whole segment, a verified file from the prefetch directory is
// used when there is one, and after success the prefetcher is asked to
// download the following segments. Prefetching never changes the outcome:
// a prefetched file that fails verification is deleted and the segment is
// fetched from the repository.
func Fetch(ctx context.Context, name, dest string, opts Options) (Result, error) {
	wf, err := pg.ParseWALFileName(name, pg.MinWALSegSize)
	if err != nil {
		return Result{}, fmt.Errorf("wal-fetch %s: not a WAL file name: %w", name, err)
	}
	if wf.Kind != pg.SegmentFile {
		// Not on the path of every segment: PostgreSQL asks for .history
		// files, most of them absent, when recovery starts (after the
		// crash that killed a wal-fetch, say) and when it promotes.
		defer removeLeftovers(filepath.Dir(dest), opts.logf)
	}
	prefetch := wf.Kind == pg.SegmentFile && opts.Prefetch.enabled()
	var res Result
	served := false
	if prefetch {
		var n int64
		if n, served = opts.Prefetch.take(wf, dest, opts.logf); served {
			res = Result{Size: n, Prefetched: true}
		}
	}
	if !served {
		if res, err = fetch(ctx, name, dest, opts); err != nil {
			return Result{}, err
		}
	}
	if prefetch {
		if err := opts.Prefetch.schedule(name, dest); err != nil {
			opts.logf("wal-fetch %s: prefetch not started: %v", name, err)
		}
	}
	return res, nil
}

// tempPrefix begins the names of the temporary files wal-fetch writes
// beside dest: the writer's process ID and a dash follow, so that
// removeLeftovers can tell those of processes that are gone.
func tempPrefix(dest string) string {
	return "." + filepath.Base(dest) + ".walrus-" + strconv.Itoa(os.Getpid()) + "-"
}

// removeLeftovers removes the temporary files that killed wal-fetch
// processes (SIGKILL, a crash) left in dir, pg_wal: a segment each, which
// nothing else would ever remove. A file counts when its name is one of
// tempPrefix's (".DEST.walrus-PID-...") and process PID is gone.
func removeLeftovers(dir string, logf func(string, ...any)) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		i := strings.Index(name, ".walrus-")
		if !strings.HasPrefix(name, ".") || i < 1 {
			continue
		}
		p, _, ok := strings.Cut(name[i+len(".walrus-"):], "-")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || !repo.ProcessGone(pid) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err == nil {
			logf("wal-fetch: removed %s, left by a wal-fetch that was killed (process %d)", name, pid)
		}
	}
}

// fetch restores name from the repository.
func fetch(ctx context.Context, name, dest string, opts Options) (Result, error) {
	info, err := repo.FindObject(ctx, opts.Store, repo.WALBase(name), opts.PreferredSuffix)
	if errors.Is(err, storage.ErrNotFound) {
		return Result{}, absent(ctx, opts.Store, name)
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
	// A malformed digest is refused by the verifying reader; none at all
	// (an object written by hand) leaves the content unchecked.
	want, _ := repo.ObjectDigest(info.Metadata)
	rc, err := opts.Decoder.Open(ctx, opts.Store, info.Key)
	if errors.Is(err, storage.ErrNotFound) {
		// Deleted between Stat and Get: still an absence, once the
		// repository is known to be one.
		return Result{}, absent(ctx, opts.Store, name)
	}
	if err != nil {
		return Result{}, fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	defer rc.Close()
	var r io.Reader = repo.VerifyingReader(rc, info.Key, want, wantSize)
	if wf, _ := pg.ParseWALFileName(name, pg.MinWALSegSize); wf.Kind == pg.SegmentFile || wf.Kind == pg.PartialFile {
		sysid, err := repositorySystem(ctx, opts.Store)
		if err != nil {
			return Result{}, fmt.Errorf("wal-fetch %s: %w", name, err)
		}
		r = checkSegment(r, wf, sysid)
	}
	n, err := WriteAtomic(dest, r)
	if err != nil {
		return Result{}, fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return Result{Key: info.Key, Size: n}, nil
}

// absent is the error for a WAL file the repository does not hold:
// ErrNotFound once the repository shows it is a walrus repository (its
// identity file, walrus.json, is there), else an error that is not
// ErrNotFound. An empty directory where an unmounted file system should
// be, or a bucket or prefix that walrus never archived to, holds no WAL
// either; answering "not found" there would make PostgreSQL end recovery
// early, at the wrong point (TRAPS.md 1).
func absent(ctx context.Context, st storage.Store, name string) error {
	_, err := st.Stat(ctx, repo.IdentityKey)
	switch {
	case err == nil:
		return fmt.Errorf("wal-fetch %s: %w", name, ErrNotFound)
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("wal-fetch %s: %w", name, ErrNotARepository)
	default:
		return fmt.Errorf("wal-fetch %s: look for %s: %w", name, repo.IdentityKey, err)
	}
}

// ErrNotARepository means the repository has no identity file
// (walrus.json), which every repository walrus archived to has: it is not
// the repository configured, or not reachable as it should be.
var ErrNotARepository = errors.New("the repository has no " + repo.IdentityKey + ", which every repository walrus archived to has: check that repo names the right place (a file system that is mounted, the right bucket and prefix) and run walrus check")

// WriteAtomic writes r to dest through a temporary file in the same
// directory: write, fsync, rename, fsync the directory. On error nothing is
// left at dest or at the temporary name.
func WriteAtomic(dest string, r io.Reader) (int64, error) {
	dir := filepath.Dir(dest)
	tmp, err := os.CreateTemp(dir, tempPrefix(dest)+"*")
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
	if err := syncDir(dir); err != nil {
		return n, err
	}
	return n, nil
}

// syncDir fsyncs a directory, making a rename in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
