package walfetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// Files in a prefetch directory besides the published segments.
const (
	// LockFile is held (flock) by the one running prefetcher.
	LockFile = "lock"
	// WantFile names the segment wal-fetch restored last: the prefetcher
	// downloads the Count segments after it.
	WantFile = "want"
	// LogFile collects the detached prefetcher's messages.
	LogFile = "prefetch.log"
	// downloadPrefix starts the temporary name of a download in flight.
	downloadPrefix = ".dl-"
)

// StaleAfter is the age after which a prefetched file is deleted unused.
const StaleAfter = 10 * time.Minute

// PrefetchTimeout bounds the downloads of one window.
const PrefetchTimeout = 10 * time.Minute

// DefaultLinger is how long the detached prefetcher waits for wal-fetch
// to ask for a new segment before it exits. During recovery PostgreSQL
// asks every few tens of milliseconds; a prefetcher that exited as soon
// as its window was done would be started again by nearly every
// wal-fetch call, adding a process start to PostgreSQL's wait.
const DefaultLinger = 3 * time.Second

// wantPoll is how often a lingering prefetcher reads the want file.
const wantPoll = 5 * time.Millisecond

// maxTimelineProbe bounds how many newer timelines the prefetcher looks
// for, one history file each.
const maxTimelineProbe = 16

// inFlightStall is how long wal-fetch waits for a download in flight that
// makes no progress before it fetches the segment itself.
const inFlightStall = 2 * time.Second

// Prefetch configures prefetching for one cluster and repository.
type Prefetch struct {
	// Dir is the prefetch directory (see PrefetchDir); "" disables
	// prefetching.
	Dir string
	// Count is how many segments after the requested one are downloaded
	// ahead; 0 disables prefetching.
	Count int
	// Start starts the background prefetcher, which must outlive the
	// calling process (see internal/detach). It is called only when no
	// prefetcher holds the directory's lock. nil starts nothing.
	Start func() error

	// moveOut moves a prefetched file out of Dir; os.Rename unless a test
	// sets it.
	moveOut func(from, to string) error
}

func (p Prefetch) enabled() bool { return p.Dir != "" && p.Count > 0 }

// PrefetchDir returns the prefetch directory of a cluster and repository.
// configured is the prefetch_dir setting; pgdata is the data directory, or
// "" to derive it from dest when dest is pg_wal/NAME inside a data
// directory (PostgreSQL runs restore_command in the data directory with
// %p = pg_wal/RECOVERYXLOG). The directory is a subdirectory, named by a
// hash of repository and data directory, of configured, or else of
// .walrus-prefetch beside the data directory: never inside it (TRAPS.md
// 8). It returns "" when neither configured nor a data directory is known.
func PrefetchDir(configured, pgdata, dest, repository string) (string, error) {
	pgdata = DataDir(pgdata, dest)
	sum := sha256.Sum256([]byte(repository + "\x00" + pgdata))
	key := hex.EncodeToString(sum[:8])
	var dir string
	switch {
	case configured != "":
		dir = filepath.Join(configured, key)
	case pgdata != "":
		dir = filepath.Join(filepath.Dir(pgdata), ".walrus-prefetch", key)
	default:
		return "", nil
	}
	if pgdata != "" && within(dir, pgdata) {
		return "", fmt.Errorf("prefetch directory %s is inside the data directory %s: set prefetch_dir (WALRUS_PREFETCH_DIR) outside it", dir, pgdata)
	}
	return dir, nil
}

// DataDir returns the absolute data directory: pgdata if set, else the
// directory holding dest when dest is pg_wal/NAME in a data directory
// (one with PG_VERSION), else "".
func DataDir(pgdata, dest string) string {
	if pgdata == "" {
		if abs, err := filepath.Abs(dest); err == nil && filepath.Base(filepath.Dir(abs)) == "pg_wal" {
			d := filepath.Dir(filepath.Dir(abs))
			if _, err := os.Stat(filepath.Join(d, "PG_VERSION")); err == nil {
				pgdata = d
			}
		}
	}
	if pgdata == "" {
		return ""
	}
	abs, err := filepath.Abs(pgdata)
	if err != nil {
		return ""
	}
	return abs
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// published parses the name of a published prefetched segment,
// NAME.DIGEST (the plaintext digest recorded with the object it came
// from, e.g. xxh64-0123456789abcdef; files published by walrus before
// digests carry a bare hex SHA-256, which is recognised too, so that they
// are served or cleaned up rather than left behind).
func published(fileName string) (seg, sum string, ok bool) {
	seg, sum, ok = strings.Cut(fileName, ".")
	if !ok || len(seg) != 24 {
		return "", "", false
	}
	if _, _, err := repo.ParseDigest(sum); err != nil {
		return "", "", false
	}
	if wf, err := pg.ParseWALFileName(seg, pg.MinWALSegSize); err != nil || wf.Kind != pg.SegmentFile {
		return "", "", false
	}
	return seg, sum, true
}

// olderSegment reports whether segment name a comes before b in WAL
// position, whatever their timelines.
func olderSegment(a, b string) bool { return a[8:] < b[8:] }

// take moves the prefetched file of wf, verified, to dest. It removes
// prefetched files older than wf or than StaleAfter on the way.
func (p Prefetch) take(wf pg.WALFile, dest string, logf func(string, ...any)) (int64, bool) {
	pub := p.findPublished(wf.Name)
	if pub == "" {
		pub = p.awaitInFlight(wf.Name)
	}
	if pub == "" {
		return 0, false
	}
	_, sum, _ := published(pub)
	src := filepath.Join(p.Dir, pub)
	tmp := filepath.Join(filepath.Dir(dest), tempPrefix(dest)+"prefetched")
	move := p.moveOut
	if move == nil {
		move = os.Rename
	}
	if err := move(src, tmp); err != nil {
		if !errors.Is(err, syscall.EXDEV) {
			return 0, false // taken or removed meanwhile
		}
		if err := copyFile(src, tmp); err != nil {
			os.Remove(tmp)
			logf("wal-fetch %s: cannot copy the prefetched file (%v); fetching it from the repository", wf.Name, err)
			return 0, false
		}
		os.Remove(src)
	}
	n, err := verifySegment(tmp, wf.Name, sum)
	if err != nil {
		os.Remove(tmp)
		logf("wal-fetch %s: prefetched file deleted: %v; fetching it from the repository", wf.Name, err)
		return 0, false
	}
	if err := os.Rename(tmp, dest); err != nil {
		os.Remove(tmp)
		logf("wal-fetch %s: %v; fetching it from the repository", wf.Name, err)
		return 0, false
	}
	if err := syncDir(filepath.Dir(dest)); err != nil {
		logf("wal-fetch %s: %v", wf.Name, err)
	}
	return n, true
}

// findPublished returns the published file of name, removing stale ones.
func (p Prefetch) findPublished(name string) string {
	entries, err := os.ReadDir(p.Dir)
	if err != nil {
		return ""
	}
	found := ""
	for _, e := range entries {
		seg, _, ok := published(e.Name())
		if !ok {
			continue
		}
		fi, err := e.Info()
		if olderSegment(seg, name) || (err == nil && time.Since(fi.ModTime()) > StaleAfter) {
			os.Remove(filepath.Join(p.Dir, e.Name()))
			continue
		}
		if seg == name {
			found = e.Name()
		}
	}
	return found
}

// awaitInFlight waits for a download of name that the prefetcher has in
// flight, for as long as it makes progress, and returns the published
// file, or "" when there is none.
func (p Prefetch) awaitInFlight(name string) string {
	var lastSize int64 = -1
	lastChange := time.Now()
	for {
		matches, _ := filepath.Glob(filepath.Join(p.Dir, downloadPrefix+name+"-*"))
		if len(matches) == 0 {
			return p.findPublished(name)
		}
		var size int64
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil {
				size += fi.Size()
			}
		}
		if size != lastSize {
			lastSize, lastChange = size, time.Now()
		} else if time.Since(lastChange) > inFlightStall {
			return ""
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// verifySegment checks that the file at path is the whole segment name
// whose plaintext digest is sum: its header names that segment, its size
// is the header's segment size, and its digest matches.
func verifySegment(path, name, sum string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h, err := repo.DigesterLike(sum)
	if err != nil {
		return 0, err
	}
	var hdr bytes.Buffer
	n, err := io.Copy(h, io.TeeReader(io.LimitReader(f, pg.SegmentHeaderSize), &hdr))
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	sh, err := pg.ParseSegmentHeader(hdr.Bytes())
	if err != nil {
		return 0, err
	}
	wf, err := pg.ParseWALFileName(name, uint64(sh.SegSize))
	if err != nil {
		return 0, err
	}
	if sh.SegNo() != wf.SegNo {
		return 0, fmt.Errorf("its header is for segment %d, not %s", sh.SegNo(), name)
	}
	m, err := io.Copy(h, f)
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	n += m
	if n != int64(sh.SegSize) {
		return 0, fmt.Errorf("%d bytes, expected %d", n, sh.SegSize)
	}
	if got := h.Digest(); !repo.SameDigest(got, sum) {
		return 0, fmt.Errorf("%w: %.24s, expected %.24s", repo.ErrChecksum, got, sum)
	}
	return n, nil
}

// copyFile copies src to a new file dst and fsyncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// want is the content of WantFile.
type want struct {
	Name    string `json:"name"`
	SegSize uint64 `json:"seg_size"`
}

// schedule records that name was restored to dest and starts the
// prefetcher unless one is running.
func (p Prefetch) schedule(name, dest string) error {
	f, err := os.Open(dest)
	if err != nil {
		return err
	}
	hdr := make([]byte, pg.SegmentHeaderSize)
	_, err = io.ReadFull(f, hdr)
	f.Close()
	if err != nil {
		return fmt.Errorf("read the segment header: %w", err)
	}
	h, err := pg.ParseSegmentHeader(hdr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	b, _ := json.Marshal(want{Name: name, SegSize: uint64(h.SegSize)})
	tmp, err := os.CreateTemp(p.Dir, ".want-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(p.Dir, WantFile))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if p.Start == nil {
		return nil
	}
	l, ok, err := tryLock(filepath.Join(p.Dir, LockFile))
	if err != nil {
		return err
	}
	if !ok {
		return nil // the running prefetcher reads the new want
	}
	l.unlock()
	return p.Start()
}

func readWant(dir string) (want, error) {
	b, err := os.ReadFile(filepath.Join(dir, WantFile))
	if err != nil {
		return want{}, err
	}
	var w want
	if err := json.Unmarshal(b, &w); err != nil {
		return want{}, fmt.Errorf("%s: %w", WantFile, err)
	}
	if !pg.ValidWALSegSize(w.SegSize) {
		return want{}, fmt.Errorf("%s: bad segment size %d", WantFile, w.SegSize)
	}
	return w, nil
}

// RunOptions configure the prefetcher.
type RunOptions struct {
	// Dir is the prefetch directory.
	Dir string
	// Count is how many segments ahead to download.
	Count int
	// Concurrency bounds the downloads in flight.
	Concurrency int
	// Fetch holds the repository (Store, Decoder, PreferredSuffix).
	Fetch Options
	// PGData, if set, is the data directory being recovered. Once it has
	// neither recovery.signal nor standby.signal (PostgreSQL removes them
	// when recovery ends), nothing more is downloaded and the prefetched
	// files are deleted.
	PGData string
	// Logf receives a line per downloaded segment and per problem.
	Logf func(format string, args ...any)
	// Linger is how long the prefetcher waits for a new want after its
	// window is done before it exits (DefaultLinger for the detached
	// prefetcher); 0 exits at once.
	Linger time.Duration
}

func (o RunOptions) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// RunPrefetcher is the background prefetcher, run by a detached process.
// It takes the directory's lock (or returns at once if another prefetcher
// holds it), reads which segment wal-fetch restored last, and downloads
// the Count segments after it, following the newest timeline whose
// history contains that segment. Each download is written under a
// temporary name, verified against the digest recorded with the object,
// fsynced, and only then renamed to NAME.DIGEST. Published files outside
// the window and leftover temporary files are deleted, so the directory
// never holds more than Count published files and Concurrency downloads
// in flight. When the window is done it watches the want file for
// o.Linger and repeats with each new want; it returns once wal-fetch has
// asked for nothing new for that long, or the data directory has left
// recovery, or ctx ends. Each window's downloads are bounded by
// PrefetchTimeout.
func RunPrefetcher(ctx context.Context, o RunOptions) error {
	if o.Count <= 0 {
		return nil
	}
	var last want
	for {
		l, ok, err := tryLock(filepath.Join(o.Dir, LockFile))
		if err != nil || !ok {
			return err
		}
		err = o.serve(ctx, &last)
		l.unlock()
		if err != nil || ctx.Err() != nil || !o.recovering() {
			return err
		}
		// wal-fetch writes the want file before it looks at the lock: a
		// want written while we held it is seen here.
		if w, err := readWant(o.Dir); err != nil || w == last {
			return err
		}
	}
}

// serve downloads the window of every new want until none has come for
// o.Linger; the caller holds the lock.
func (o RunOptions) serve(ctx context.Context, last *want) error {
	idleSince := time.Now()
	for {
		w, err := readWant(o.Dir)
		if err != nil {
			return err
		}
		if w != *last {
			*last = w
			wctx, cancel := context.WithTimeout(ctx, PrefetchTimeout)
			err := o.window(wctx, w)
			cancel()
			if err != nil {
				return err
			}
			idleSince = time.Now()
			continue
		}
		if !o.recovering() {
			o.clean(nil) // recovery ended: what is left will not be asked for
			return nil
		}
		if time.Since(idleSince) >= o.Linger {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wantPoll):
		}
	}
}

// window downloads the Count segments after w.
func (o RunOptions) window(ctx context.Context, w want) error {
	wf, err := pg.ParseWALFileName(w.Name, w.SegSize)
	if err != nil || wf.Kind != pg.SegmentFile {
		return fmt.Errorf("%s: %q is not a segment name", WantFile, w.Name)
	}
	lineage := o.lineage(ctx, wf.Timeline, wf.StartLSN(w.SegSize))
	var names []string
	keep := map[string]bool{}
	for i := 1; i <= o.Count; i++ {
		segNo := wf.SegNo + uint64(i)
		n := pg.SegmentName(TimelineFor(lineage, wf.Timeline, segNo, w.SegSize), segNo, w.SegSize)
		names = append(names, n)
		keep[n] = true
	}
	if !o.recovering() {
		o.clean(nil)
		return nil
	}
	sysid, err := repositorySystem(ctx, o.Fetch.Store)
	if err != nil {
		return fmt.Errorf("prefetch: %w", err)
	}
	have := o.clean(keep)
	// The archive ends somewhere: once a segment is missing, the ones
	// after it are not asked for.
	var end atomic.Int64
	end.Store(int64(len(names)))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, o.Concurrency))
	for i, n := range names {
		if have[n] {
			continue
		}
		if int64(i) > end.Load() {
			break
		}
		g.Go(func() error {
			if int64(i) > end.Load() || !o.recovering() {
				return nil
			}
			found, err := o.download(gctx, n, sysid)
			if err == nil && !found {
				for {
					e := end.Load()
					if int64(i) >= e || end.CompareAndSwap(e, int64(i)) {
						break
					}
				}
			}
			return err
		})
	}
	err = g.Wait()
	if !o.recovering() {
		o.clean(nil)
	}
	return err
}

// recovering reports whether the data directory, if known, is still in
// recovery.
func (o RunOptions) recovering() bool {
	if o.PGData == "" {
		return true
	}
	for _, f := range []string{"recovery.signal", "standby.signal"} {
		if _, err := os.Stat(filepath.Join(o.PGData, f)); err == nil {
			return true
		}
	}
	return false
}

// clean removes temporary files (the lock holder is the only writer),
// stale files and published files not in keep; it returns the published
// segments kept.
func (o RunOptions) clean(keep map[string]bool) map[string]bool {
	have := map[string]bool{}
	entries, _ := os.ReadDir(o.Dir)
	for _, e := range entries {
		p := filepath.Join(o.Dir, e.Name())
		if strings.HasPrefix(e.Name(), downloadPrefix) {
			os.Remove(p)
			continue
		}
		seg, _, ok := published(e.Name())
		if !ok {
			continue
		}
		fi, err := e.Info()
		if !keep[seg] || have[seg] || (err == nil && time.Since(fi.ModTime()) > StaleAfter) {
			os.Remove(p)
			continue
		}
		have[seg] = true
	}
	return have
}

// download fetches one segment into the directory, checked as wal-fetch
// checks it (recorded checksum and size; a header naming this segment,
// written by cluster sysid). A segment not in the archive (found false) is
// not an error: it may not be archived yet.
func (o RunOptions) download(ctx context.Context, name string, sysid uint64) (found bool, err error) {
	f := o.Fetch
	info, err := repo.FindObject(ctx, f.Store, repo.WALBase(name), f.PreferredSuffix)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("prefetch %s: %w", name, err)
	}
	sum, ok := repo.ObjectDigest(info.Metadata)
	if !ok {
		o.logf("prefetch %s: %s has no recorded checksum: not prefetched", name, info.Key)
		return true, nil
	}
	wantSize := int64(-1)
	if n, err := strconv.ParseInt(info.Metadata[repo.MetaSize], 10, 64); err == nil {
		wantSize = n
	}
	rc, err := f.Decoder.Open(ctx, f.Store, info.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("prefetch %s: %w", name, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(o.Dir, downloadPrefix+name+"-*")
	if err != nil {
		return true, fmt.Errorf("prefetch %s: %w", name, err)
	}
	wf, _ := pg.ParseWALFileName(name, pg.MinWALSegSize)
	_, err = io.Copy(tmp, checkSegment(repo.VerifyingReader(rc, info.Key, sum, wantSize), wf, sysid))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(o.Dir, name+"."+sum))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return true, fmt.Errorf("prefetch %s: %w", name, err)
	}
	o.logf("prefetch %s: ready", name)
	return true, nil
}

// lineage returns the history to follow from timeline tli at position
// from: that of the newest timeline in the archive (probing tli+1, tli+2,
// ... as PostgreSQL does for recovery_target_timeline = latest) if its
// lineage passes through tli after from, else tli alone.
func (o RunOptions) lineage(ctx context.Context, tli pg.TimelineID, from pg.LSN) pg.History {
	var newest pg.History
	found := false
	for x := tli + 1; x <= tli+maxTimelineProbe; x++ {
		h, err := o.readHistory(ctx, x)
		if err != nil {
			if !errors.Is(err, storage.ErrNotFound) {
				o.logf("prefetch: %v", err)
			}
			break
		}
		newest, found = h, true
	}
	if found && newest.Contains(tli, from) {
		return newest
	}
	return pg.History{TLI: tli}
}

func (o RunOptions) readHistory(ctx context.Context, tli pg.TimelineID) (pg.History, error) {
	f := o.Fetch
	name := pg.HistoryFileName(tli)
	info, err := repo.FindObject(ctx, f.Store, repo.WALBase(name), f.PreferredSuffix)
	if err != nil {
		return pg.History{}, err
	}
	rc, err := f.Decoder.Open(ctx, f.Store, info.Key)
	if err != nil {
		return pg.History{}, err
	}
	defer rc.Close()
	want, _ := repo.ObjectDigest(info.Metadata) // a malformed one is refused when read
	b, err := io.ReadAll(repo.VerifyingReader(io.LimitReader(rc, 1<<20), info.Key, want, -1))
	if err != nil {
		return pg.History{}, fmt.Errorf("read %s: %w", info.Key, err)
	}
	return pg.ReadHistory(tli, bytes.NewReader(b))
}

// TimelineFor returns the timeline PostgreSQL asks segment segNo from,
// following lineage h from timeline cur: the newest timeline of h, not
// older than cur, that begins at or before the segment (a timeline begins
// in the segment holding its switch point, so that segment is asked from
// the new timeline).
func TimelineFor(h pg.History, cur pg.TimelineID, segNo, segSize uint64) pg.TimelineID {
	out := cur
	consider := func(tli pg.TimelineID, begin uint64) {
		if tli >= cur && segNo >= begin && tli > out {
			out = tli
		}
	}
	for i, e := range h.Entries {
		var begin uint64
		if i > 0 {
			begin = pg.SegmentForLSN(h.Entries[i-1].SwitchLSN, segSize)
		}
		consider(e.Parent, begin)
	}
	var begin uint64
	if n := len(h.Entries); n > 0 {
		begin = pg.SegmentForLSN(h.Entries[n-1].SwitchLSN, segSize)
	}
	consider(h.TLI, begin)
	return out
}
