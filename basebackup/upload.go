package basebackup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/walrusdb/walrus/internal/progress"

	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/delta"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// castagnoli is the CRC-32C table; hash/crc32 uses the CPU's instruction
// for it where there is one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcString formats a CRC-32C as the manifest stores it.
func crcString(sum uint32) string { return fmt.Sprintf("%08x", sum) }

// Buffer sizes: every part stream and every worker holds one of each, so
// memory is bounded by the number of workers, never by the data.
const (
	copyBufferSize = 256 << 10
	tarBufferSize  = 256 << 10
)

// errPartEnded unblocks a part's writer once its upload returned.
var errPartEnded = errors.New("part upload ended")

// uploader writes files into tar parts, each compressed, encrypted and
// stored as it is produced, several parts at once.
type uploader struct {
	st       storage.Store
	enc      *repo.Encoder
	backup   string
	partSize int64
	limiter  *rateLimiter
	prog     *progress.Line
	read     readSettings
	seq      atomic.Int64
	found    findings
	// cacheBytes is the memory of the pageCaches of deltas in progress.
	cacheBytes atomic.Int64

	mu     sync.Mutex
	parts  []catalog.Part
	stored []string // keys stored so far, removed again if the backup fails
	// recognised are parts found already stored with the very bytes this
	// backup sent (repo.Written.Recognised): never removed by this backup,
	// since it may not have written them.
	recognised []string
	warnings   []string
}

// partWriter is one part being produced: a tar stream into a pipe that
// Encoder.Put reads on its own goroutine.
type partWriter struct {
	name   string
	pw     *io.PipeWriter
	buf    *bufio.Writer
	count  *countingWriter
	tw     *tar.Writer
	result chan putResult
}

type putResult struct {
	w   repo.Written
	err error
}

// countingWriter counts the bytes of the plaintext tar stream.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// startPart starts a new part and its upload.
func (u *uploader) startPart(ctx context.Context) *partWriter {
	name := fmt.Sprintf("part_%05d.tar", u.seq.Add(1))
	pr, pw := io.Pipe()
	p := &partWriter{name: name, pw: pw, result: make(chan putResult, 1)}
	p.buf = bufio.NewWriterSize(pw, tarBufferSize)
	p.count = &countingWriter{w: p.buf}
	p.tw = tar.NewWriter(p.count)
	go func() {
		// Parts are create-only: a backup never overwrites anything.
		w, err := u.enc.Put(ctx, u.st, repo.PartsPrefix(u.backup)+name, pr, storage.PutOptions{IfNotExists: true})
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.CloseWithError(errPartEnded)
		}
		p.result <- putResult{w, err}
	}()
	return p
}

// finishPart ends the tar stream, waits for the upload and records the
// part.
func (u *uploader) finishPart(p *partWriter) error {
	err := p.tw.Close()
	if err == nil {
		err = p.buf.Flush()
	}
	if err != nil {
		p.abort(err)
		return fmt.Errorf("write part %s: %w", p.name, err)
	}
	p.pw.Close()
	r := <-p.result
	if r.err != nil {
		return fmt.Errorf("store part %s: %w", p.name, r.err)
	}
	u.mu.Lock()
	if r.w.Recognised {
		u.recognised = append(u.recognised, r.w.Key)
	} else {
		u.stored = append(u.stored, r.w.Key)
	}
	u.mu.Unlock()
	if r.w.RawSize != p.count.n {
		return fmt.Errorf("store part %s: %d bytes stored, %d written", p.name, r.w.RawSize, p.count.n)
	}
	u.mu.Lock()
	u.parts = append(u.parts, catalog.Part{Name: p.name, Key: r.w.Key, RawSize: r.w.RawSize, StoredSize: r.w.StoredSize, StoredSHA256: r.w.StoredSHA256})
	u.mu.Unlock()
	return nil
}

// abort fails the part's upload, which then stores nothing, and waits for
// it to return.
func (p *partWriter) abort(err error) {
	p.pw.CloseWithError(err)
	<-p.result
}

// upload stores the files among jobs in parts, with workers parts in
// production at once. It returns one manifest entry per job, nil for a
// file that vanished before it could be read (and for non-file jobs).
func (u *uploader) upload(ctx context.Context, jobs []entry, workers int) ([]*catalog.File, error) {
	out := make([]*catalog.File, len(jobs))
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for i, e := range jobs {
			if e.kind != catalog.FileWhole {
				continue
			}
			select {
			case next <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range max(1, workers) {
		g.Go(func() error { return u.worker(gctx, jobs, out, next) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// worker takes files from next and appends them to its current part,
// cutting a new part when the current one reaches partSize. A part is
// started only when a file needs one, so a delta whose files are all
// unchanged stores no empty parts.
func (u *uploader) worker(ctx context.Context, jobs []entry, out []*catalog.File, next <-chan int) (err error) {
	var p *partWriter
	defer func() {
		if p == nil {
			return
		}
		if err != nil {
			p.abort(err)
			return
		}
		err = u.finishPart(p)
	}()
	part := func() *partWriter {
		if p == nil {
			p = u.startPart(ctx)
		}
		return p
	}
	buf := make([]byte, copyBufferSize)
	for i := range next {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := u.addFile(ctx, part, jobs[i], buf)
		if err != nil {
			return err
		}
		out[i] = f
		if p != nil && p.count.n >= u.partSize {
			cur := p
			p = nil
			if err := u.finishPart(cur); err != nil {
				return err
			}
		}
	}
	return nil
}

// addFile stores one file in the part that part returns: whole, or in a
// delta, a relation file's main fork as an increment over the base, or as
// only a manifest entry when unchanged (see addRelation). It reads at most
// the size the file has when it is opened (WAL replay repairs what changes
// after); a file that shrinks while read is fine: the bytes read are
// recorded and the tar entry is padded with zeros to the size its header
// announced. A file that vanished gives nil; any other read error fails.
// The pages of relation files are verified as they are read (when the
// cluster has data checksums); failures are collected in u.found.
func (u *uploader) addFile(ctx context.Context, part func() *partWriter, e entry, buf []byte) (*catalog.File, error) {
	f, err := os.Open(e.src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", e.rel, err)
	}
	if !fi.Mode().IsRegular() {
		u.warn(fmt.Sprintf("skipped %s: no longer a regular file", e.rel))
		return nil, nil
	}
	rf, isRel := pg.ParseRelFilePath(e.rel)
	if !isRel || u.read.blockSize == 0 {
		return u.writeEntry(ctx, part(), e.rel, e.link, f, fi.Size(), fi.Mode().Perm(), fi.ModTime(), buf, nil)
	}
	if d := u.read.delta; d != nil && rf.IsDataFork() {
		// Stored whole instead: a file absent from the base, or one that
		// shrank since (truncation then an unlogged zero-extension must
		// not bring old pages back; TRAPS.md 18).
		if base := d.file(e.rel); base != nil && fi.Size() >= base.Size {
			return u.addRelation(ctx, part, e, f, fi, rf, base)
		}
	}
	chk := newPageChecker(f, rf, u.read)
	out, err := u.writeEntry(ctx, part(), e.rel, e.link, f, fi.Size(), fi.Mode().Perm(), fi.ModTime(), buf, chk)
	if err != nil {
		return nil, err
	}
	u.found.add(e.rel, chk.failed, &chk.lsn, u.read.startLSN)
	return out, nil
}

// addRelation stores the main fork segment file f of a delta backup, which
// the base holds with a size no larger: the pages whose LSN is at or past
// the base's start LSN (TRAPS.md 16) and every page whose LSN cannot be
// trusted, as an increment (package delta); or, when no page is selected
// and the size is the base's, only a manifest entry, unchanged. The file
// is read once, by delta.SelectPages; delta.WriteIncrement gets the pages
// it selected from a pageCache, up to deltaCacheBytes for the whole
// backup, and reads only the others again (from the OS page cache,
// normally).
func (u *uploader) addRelation(ctx context.Context, part func() *partWriter, e entry, f *os.File, fi fs.FileInfo, rf pg.RelFile, base *catalog.File) (*catalog.File, error) {
	d := u.read.delta
	bs := u.read.blockSize
	size := fi.Size()
	lsn := &lsnTracker{bs: bs}
	cache := newPageCache(bs, d.m.StartLSN, &u.cacheBytes)
	defer cache.release()
	sel, err := delta.SelectPages(ctx, &trackedFile{ctx: ctx, f: f, u: u, count: true, lsn: lsn, cache: cache, fill: true}, size, delta.SelectOptions{
		BlockSize:       bs,
		Threshold:       d.m.StartLSN,
		StartLSN:        u.read.startLSN,
		VerifyChecksums: u.read.verify,
		RelFile:         rf,
		RelSegSize:      u.read.relSegSize,
	})
	if err != nil {
		return nil, err
	}
	if len(sel.Blocks) == 0 && size == base.Size {
		u.found.add(e.rel, sel.ChecksumFailures, lsn, u.read.startLSN)
		u.prog.AddUnits(1)
		return &catalog.File{
			Path:   e.rel,
			Kind:   catalog.FileUnchanged,
			Size:   size,
			Mode:   catalog.Mode(fi.Mode().Perm()),
			MTime:  fi.ModTime().UTC(),
			Link:   e.link,
			Source: d.source(base),
		}, nil
	}
	p := part()
	if err := p.tw.Flush(); err != nil {
		return nil, fmt.Errorf("write part %s: %w", p.name, err)
	}
	offset := p.count.n
	incSize := catalog.MinIncrementSize + int64(len(sel.Blocks))*int64(4+bs)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     e.rel,
		Size:     incSize,
		Mode:     int64(fi.Mode().Perm()),
		ModTime:  fi.ModTime().Truncate(time.Second),
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("write part %s: %s: %w", p.name, e.rel, err)
	}
	crc := crc32.New(castagnoli)
	n, err := delta.WriteIncrement(io.MultiWriter(p.tw, crc), &trackedFile{ctx: ctx, f: f, u: u, lsn: lsn, cache: cache}, sel, bs)
	if err != nil {
		return nil, fmt.Errorf("write part %s: %w", p.name, err)
	}
	if n != incSize {
		return nil, fmt.Errorf("write part %s: increment of %s is %d bytes, %d announced", p.name, e.rel, n, incSize)
	}
	u.found.add(e.rel, sel.ChecksumFailures, lsn, u.read.startLSN)
	u.prog.AddUnits(1)
	return &catalog.File{
		Path:       e.rel,
		Kind:       catalog.FileIncrement,
		Size:       size,
		Mode:       catalog.Mode(fi.Mode().Perm()),
		MTime:      fi.ModTime().UTC(),
		Link:       e.link,
		Part:       p.name,
		Offset:     offset,
		CRC32C:     crcString(crc.Sum32()),
		StoredSize: incSize,
		Blocks:     int64(len(sel.Blocks)),
	}, nil
}

// writeEntry appends one tar entry announcing size bytes and copies at
// most size bytes from r into it. If r ends early (the file shrank while
// it was read), the entry is padded with zeros to size and the manifest
// entry records the bytes actually read: a restore writes exactly those.
// With chk, r is read in whole chunks of len(buf) (a multiple of the block
// size) and chk checks each chunk's pages before they are stored.
func (u *uploader) writeEntry(ctx context.Context, p *partWriter, rel, link string, r io.Reader, size int64, mode fs.FileMode, mtime time.Time, buf []byte, chk *pageChecker) (*catalog.File, error) {
	if err := p.tw.Flush(); err != nil {
		return nil, fmt.Errorf("write part %s: %w", p.name, err)
	}
	offset := p.count.n
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     rel,
		Size:     size,
		Mode:     int64(mode),
		// Whole seconds keep the header plain USTAR; the manifest holds
		// the exact time.
		ModTime: mtime.Truncate(time.Second),
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("write part %s: %s: %w", p.name, rel, err)
	}
	crc := crc32.New(castagnoli)
	var n int64
	for n < size {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		want := int(min(int64(len(buf)), size-n))
		if err := u.limiter.wait(ctx, want); err != nil {
			return nil, err
		}
		k, rerr := io.ReadFull(r, buf[:want])
		if errors.Is(rerr, io.ErrUnexpectedEOF) {
			rerr = io.EOF
		}
		if k > 0 && chk != nil {
			if err := chk.check(buf[:k], n); err != nil {
				return nil, err
			}
		}
		if k > 0 {
			if _, err := p.tw.Write(buf[:k]); err != nil {
				return nil, fmt.Errorf("write part %s: %s: %w", p.name, rel, err)
			}
			crc.Write(buf[:k])
			n += int64(k)
			u.prog.AddBytes(int64(k))
		}
		if errors.Is(rerr, io.EOF) {
			break // it shrank while we read it
		}
		if rerr != nil {
			return nil, fmt.Errorf("read %s: %w", rel, rerr)
		}
	}
	if n < size {
		clear(buf)
		for pad := size - n; pad > 0; {
			k := int(min(int64(len(buf)), pad))
			if _, err := p.tw.Write(buf[:k]); err != nil {
				return nil, fmt.Errorf("write part %s: %s: %w", p.name, rel, err)
			}
			pad -= int64(k)
		}
	}
	u.prog.AddUnits(1)
	return &catalog.File{
		Path:   rel,
		Kind:   catalog.FileWhole,
		Size:   n,
		Mode:   catalog.Mode(mode),
		MTime:  mtime.UTC(),
		Link:   link,
		Part:   p.name,
		Offset: offset,
		CRC32C: crcString(crc.Sum32()),
	}, nil
}

// addControlFile stores pg_control, read last, in a part of its own.
func (u *uploader) addControlFile(ctx context.Context, data []byte, mode fs.FileMode, mtime time.Time) (*catalog.File, error) {
	p := u.startPart(ctx)
	f, err := u.writeEntry(ctx, p, controlFilePath, "", bytes.NewReader(data), int64(len(data)), mode.Perm(), mtime, make([]byte, 64<<10), nil)
	if err != nil {
		p.abort(err)
		return nil, err
	}
	if err := u.finishPart(p); err != nil {
		return nil, err
	}
	return f, nil
}

func (u *uploader) warn(s string) {
	u.mu.Lock()
	u.warnings = append(u.warnings, s)
	u.mu.Unlock()
}

// removeStored deletes the parts this uploader stored, best effort, after
// a failed backup. They are invisible without a manifest; removing them
// only saves space. Parts it recognised (already stored) stay: left
// reports whether there are any.
func (u *uploader) removeStored(ctx context.Context) (left bool, err error) {
	u.mu.Lock()
	keys := append([]string(nil), u.stored...)
	left = len(u.recognised) > 0
	u.mu.Unlock()
	if len(keys) == 0 {
		return left, nil
	}
	return left, u.st.Delete(ctx, keys...)
}
