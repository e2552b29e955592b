package walpush

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/walrusdb/walrus/compress"
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
	// Concurrency bounds how many files Archive pushes at once: the
	// requested one plus up to Concurrency-1 other ready segments. 0 or 1
	// pushes only the requested file. Push ignores it.
	Concurrency int
	// Repository names the repository (a string that differs between
	// repositories, e.g. its URL and endpoint). A marker written while
	// pushing to one repository never confirms a push to another.
	Repository string
	// Logf, if not nil, receives one line per extra push and per marker
	// that could not be used. It may be called from several goroutines.
	Logf func(format string, args ...any)
	// IdleExit, for Serve only, makes the daemon return after this long
	// without a request and with no push in flight, and also right after
	// answering a client whose repository or encryption setting differs
	// from its own (so that the client's next call can start a daemon
	// with its settings). 0: serve until ctx ends.
	IdleExit time.Duration
}

// Result describes a finished push.
type Result struct {
	// Name is the WAL file name.
	Name string
	// Key is the object's key.
	Key string
	// AlreadyStored is true when an identical object was found.
	AlreadyStored bool
	// Confirmed is true when an earlier Archive pushed the file ahead of
	// PostgreSQL's request and this call confirmed the stored object
	// against the file (see Archive).
	Confirmed bool
	// RawSize and StoredSize are the plaintext and stored sizes.
	RawSize, StoredSize int64
	// Digest is the plaintext's digest (repo.MetaDigest), in the
	// algorithm of the stored object's.
	Digest string
	// SystemIdentifier is the cluster the file belongs to.
	SystemIdentifier uint64

	file *fileID // the pushed file, as it was when read
}

// ErrConflict means a different file is already archived under the name.
var ErrConflict = errors.New("a different file is already archived under this name")

// errTruncatedObject means the object stored under the name holds this
// file's recorded digest but not the size recorded when it was stored
// (repo.MetaStoredSize): a truncated upload, which push replaces.
var errTruncatedObject = errors.New("the archived copy of this file is truncated")

// Push archives the WAL file at path.
func Push(ctx context.Context, path string, opts Options) (Result, error) {
	return newPusher(opts).push(ctx, path, nil)
}

// pusher pushes files for one Archive or Push call. It checks the
// repository's identity once per system identifier.
type pusher struct {
	opts Options

	mu       sync.Mutex // held across the identity check
	verified map[uint64]bool
	bufs     *chunkPool  // single-pass buffers, within bufferBudget
	chunks   chan []byte // read buffers to reuse
}

func newPusher(opts Options) *pusher {
	return &pusher{opts: opts, verified: map[uint64]bool{}, bufs: newChunkPool(bufferBudget), chunks: make(chan []byte, 4)}
}

// chunk returns a read buffer of readChunk bytes.
func (p *pusher) chunk() []byte {
	select {
	case c := <-p.chunks:
		return c
	default:
		return make([]byte, readChunk)
	}
}

// reuseChunk keeps a read buffer for a later push, or drops it.
func (p *pusher) reuseChunk(c []byte) {
	select {
	case p.chunks <- c:
	default:
	}
}

// readChunk is the size of wal-push's reads: compress.BlockSize, so that
// the compressor works on the read buffer itself instead of copying it
// into a block of its own. Profiles of io.Copy's 32 KiB reads showed a
// push costing 19-20 ms of CPU per 16 MiB segment against 15 ms this way.
const readChunk = compress.BlockSize

func (p *pusher) logf(format string, args ...any) {
	if p.opts.Logf != nil {
		p.opts.Logf(format, args...)
	}
}

// ensureIdentity runs repo.EnsureIdentity until it succeeds once for
// sysid; concurrent callers wait for the one asking.
func (p *pusher) ensureIdentity(ctx context.Context, sysid uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verified[sysid] {
		return nil
	}
	if _, err := repo.EnsureIdentity(ctx, p.opts.Store, sysid, p.opts.Encoder.Encrypted()); err != nil {
		return err
	}
	p.verified[sysid] = true
	return nil
}

// fileID identifies a file's content without reading it (see fileIDOf).
type fileID struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	CTime int64  `json:"ctime_ns"`
}

// maxBuffered is the largest file pushed in one pass through a memory
// buffer; larger files (big --wal-segsize) are read twice and streamed.
const maxBuffered = 32 << 20

// bufferBudget bounds the memory of one process's single-pass buffers
// (chunkPool): room for the compressed objects of several segments at
// once (a 16 MiB segment of WAL usually compresses to 1-8 MiB), or of two
// that do not compress at all. A push that finds no room streams instead,
// reading the file twice.
const bufferBudget = 32 << 20

// push archives the file at path. With marks, a marker for the file is
// confirmed against the repository first and, if it holds, nothing is
// uploaded.
func (p *pusher) push(ctx context.Context, path string, marks *markers) (Result, error) {
	opts := p.opts
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
	id := fileIDOf(fi)
	sysid, err := systemIdentifier(f, fi.Size(), name, path, opts.PGData)
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	sum := ""
	if marks != nil {
		res, ok, s := p.confirmMarker(ctx, marks, name, sysid, f, fi.Size(), id)
		if ok {
			return res, nil
		}
		sum = s
	}
	base := repo.WALBase(name)
	buffered := fi.Size() <= maxBuffered
	// The repository's identity and the lookup of an object already
	// stored under the name are round trips to a remote store; they run
	// while the file is read and compressed, and nothing is stored or
	// compared before both are answered.
	var (
		idErr, findErr error
		found          storage.ObjectInfo
		lookups        sync.WaitGroup
	)
	lookups.Go(func() { idErr = p.ensureIdentity(ctx, sysid) })
	lookups.Go(func() { found, findErr = repo.FindAnyObject(ctx, opts.Store, base, opts.Encoder.Suffix()) })
	var (
		enc    *encoded
		encErr error
	)
	if buffered {
		enc, encErr = p.encode(f, fi, name)
		switch {
		case errors.Is(encErr, errNoBuffer):
			// No room to hold it all: give the chunks back now, stream.
			enc.buf.release()
			enc, encErr, buffered = nil, nil, false
		case enc != nil:
			defer enc.buf.release()
		}
	}
	lookups.Wait()
	if idErr != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, idErr)
	}
	if findErr == nil {
		if encErr == nil && enc != nil {
			sum = enc.sum
		}
		res, err := compareStored(found, name, f, sum, fi.Size(), sysid)
		if !errors.Is(err, errTruncatedObject) {
			return res, err
		}
		// A truncated copy of this very file (its recorded digest is this
		// file's), left by an upload that died before it could check
		// and remove it: replacing it loses nothing.
		if derr := opts.Store.Delete(ctx, found.Key); derr != nil {
			return Result{}, fmt.Errorf("%w; removing it failed: %v", err, derr)
		}
		p.logf("wal-push %s: %v; removed it, storing the file again", name, err)
		findErr = storage.ErrNotFound
	}
	if !errors.Is(findErr, storage.ErrNotFound) {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, findErr)
	}
	var res Result
	switch {
	case encErr != nil:
		return Result{}, encErr
	case buffered:
		res, err = p.store(ctx, f, enc, base, name)
	default:
		res, err = p.putStreamed(ctx, f, fi, base, name, sum)
	}
	if err != nil {
		return Result{}, err
	}
	res.SystemIdentifier, res.file = sysid, id
	return res, nil
}

// encoded is a file compressed and encrypted into memory.
type encoded struct {
	buf *chunkBuffer // the object's bytes; release it when done
	sum string       // the plaintext's digest
	raw int64        // the plaintext's size
}

// encode reads the file once, digesting the plaintext while it
// compresses and encrypts it into a buffer from p.bufs. The object and
// its recorded digest come from the same bytes, and a retried upload can
// resend the whole body. The buffer is returned even with an error, for
// reuse. errNoBuffer means the budget had no room for the object.
func (p *pusher) encode(f *os.File, fi os.FileInfo, name string) (*encoded, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("wal-push %s: %w", name, err)
	}
	enc := &encoded{buf: &chunkBuffer{pool: p.bufs}}
	w, err := p.opts.Encoder.Wrap(enc.buf)
	if err != nil {
		return enc, fmt.Errorf("wal-push %s: %w", name, err)
	}
	h := repo.NewDigester()
	chunk := p.chunk()
	defer p.reuseChunk(chunk)
	raw, err := repo.CopyDigested(w, h, f, chunk)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return enc, fmt.Errorf("wal-push %s: read and encode: %w", name, err)
	}
	if err := unchanged(f, fi, raw); err != nil {
		return enc, fmt.Errorf("wal-push %s: %w", name, err)
	}
	enc.sum, enc.raw = h.Digest(), raw
	return enc, nil
}

// store stores an encoded file create-only, with its digest as metadata,
// and confirms the stored size.
func (p *pusher) store(ctx context.Context, f *os.File, enc *encoded, base, name string) (Result, error) {
	opts := p.opts
	key := base + opts.Encoder.Suffix()
	err := opts.Store.Put(ctx, key, io.NewSectionReader(enc.buf, 0, enc.buf.Len()), storage.PutOptions{
		IfNotExists: true,
		Size:        enc.buf.Len(),
		Metadata: map[string]string{repo.MetaDigest: enc.sum, repo.MetaSize: strconv.FormatInt(enc.raw, 10),
			repo.MetaStoredSize: strconv.FormatInt(enc.buf.Len(), 10)},
	})
	if errors.Is(err, storage.ErrExists) {
		// Someone stored it between our look and our write.
		return p.compareAfterRace(ctx, base, name, f, enc.sum, enc.raw)
	}
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	info, err := opts.Store.Stat(ctx, key)
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: confirm %s: %w", name, key, err)
	}
	if info.Size != enc.buf.Len() {
		return Result{}, repo.RemoveTruncated(ctx, opts.Store, key,
			fmt.Errorf("wal-push %s: confirm %s: stored size %d, expected %d: the upload was truncated; PostgreSQL will retry", name, key, info.Size, enc.buf.Len()))
	}
	return Result{Name: name, Key: key, RawSize: enc.raw, StoredSize: info.Size, Digest: enc.sum}, nil
}

// putStreamed checksums the file, then streams it through the encoder
// into the store, and refuses the result if the file changed in between.
func (p *pusher) putStreamed(ctx context.Context, f *os.File, fi os.FileInfo, base, name, sum string) (Result, error) {
	opts := p.opts
	if alg, _, err := repo.ParseDigest(sum); err != nil || alg != repo.DigestXXH64 {
		if sum, err = digestFile(f, ""); err != nil {
			return Result{}, fmt.Errorf("wal-push %s: read: %w", name, err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	w, err := opts.Encoder.Put(ctx, opts.Store, base, f, storage.PutOptions{
		IfNotExists: true,
		Metadata:    map[string]string{repo.MetaDigest: sum, repo.MetaSize: strconv.FormatInt(fi.Size(), 10)},
	})
	if errors.Is(err, storage.ErrExists) {
		return p.compareAfterRace(ctx, base, name, f, sum, fi.Size())
	}
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	if w.Digest != sum || w.RawSize != fi.Size() {
		// The file changed while we read it: never leave an object whose
		// recorded checksum does not match its content.
		_ = opts.Store.Delete(ctx, w.Key)
		return Result{}, fmt.Errorf("wal-push %s: the file changed while it was being archived; PostgreSQL will retry", name)
	}
	return Result{Name: name, Key: w.Key, RawSize: w.RawSize, StoredSize: w.StoredSize, Digest: sum}, nil
}

// compareAfterRace handles a create-only write that found an object
// stored since we looked.
func (p *pusher) compareAfterRace(ctx context.Context, base, name string, f *os.File, sum string, size int64) (Result, error) {
	info, err := repo.FindObject(ctx, p.opts.Store, base, p.opts.Encoder.Suffix())
	if err != nil {
		return Result{}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	return compareStored(info, name, f, sum, size, 0)
}

// unchanged checks that the file still has the size and modification
// time it had when opened, and that raw bytes were read from it.
func unchanged(f *os.File, before os.FileInfo, raw int64) error {
	after, err := f.Stat()
	if err != nil {
		return err
	}
	if raw != before.Size() || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return errors.New("the file changed while it was being archived; PostgreSQL will retry")
	}
	return nil
}

// compareStored compares a stored object with the file f: equal digests
// are success (AlreadyStored), different ones ErrConflict. sum is the
// file's digest when known; when it is of another algorithm than the
// stored object's (an object of an older walrus records SHA-256), the file
// is read again with that algorithm.
func compareStored(info storage.ObjectInfo, name string, f *os.File, sum string, size int64, sysid uint64) (Result, error) {
	stored, ok := repo.ObjectDigest(info.Metadata)
	if !ok {
		return Result{}, fmt.Errorf("wal-push %s: %w: %s has no recorded checksum; inspect it and remove it by hand if it is wrong", name, ErrConflict, info.Key)
	}
	salg, _, _ := repo.ParseDigest(stored)
	if alg, _, err := repo.ParseDigest(sum); err != nil || alg != salg {
		if sum, err = digestFile(f, stored); err != nil {
			return Result{}, fmt.Errorf("wal-push %s: read: %w", name, err)
		}
	}
	if !repo.SameDigest(stored, sum) {
		return Result{}, fmt.Errorf("wal-push %s: %w (%s, %.22s, this file %.22s); the stored object was left untouched: check that only one cluster archives into this repository", name, ErrConflict, info.Key, stored, sum)
	}
	if s, ok := info.Metadata[repo.MetaStoredSize]; ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n != info.Size {
			return Result{}, fmt.Errorf("wal-push %s: %w: %s is %d bytes, not the %d recorded when it was stored", name, errTruncatedObject, info.Key, info.Size, n)
		}
	}
	return Result{Name: name, Key: info.Key, AlreadyStored: true, RawSize: size, StoredSize: info.Size, Digest: sum, SystemIdentifier: sysid}, nil
}

// digestFile returns the digest of f's content from its start, with the
// algorithm of the digest like ("": the algorithm of new objects).
func digestFile(f *os.File, like string) (string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	return repo.DigestLike(f, like)
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
