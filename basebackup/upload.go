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

	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/catalog"
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
	prog     *progress
	seq      atomic.Int64

	mu       sync.Mutex
	parts    []catalog.Part
	stored   []string // keys stored so far, removed again if the backup fails
	warnings []string
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
	u.stored = append(u.stored, r.w.Key)
	u.mu.Unlock()
	if r.w.RawSize != p.count.n {
		return fmt.Errorf("store part %s: %d bytes stored, %d written", p.name, r.w.RawSize, p.count.n)
	}
	u.mu.Lock()
	u.parts = append(u.parts, catalog.Part{Name: p.name, Key: r.w.Key, RawSize: r.w.RawSize, StoredSize: r.w.StoredSize, SHA256: r.w.SHA256})
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
// cutting a new part when the current one reaches partSize.
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
	buf := make([]byte, copyBufferSize)
	for i := range next {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == nil {
			p = u.startPart(ctx)
		}
		f, err := u.addFile(ctx, p, jobs[i], buf)
		if err != nil {
			return err
		}
		out[i] = f
		if p.count.n >= u.partSize {
			cur := p
			p = nil
			if err := u.finishPart(cur); err != nil {
				return err
			}
		}
	}
	return nil
}

// addFile appends one file to the part. It reads at most the size the
// file has when it is opened (WAL replay repairs what changes after); a
// file that shrinks while read is fine: the bytes read are recorded and
// the tar entry is padded with zeros to the size its header announced. A
// file that vanished gives nil; any other read error fails.
func (u *uploader) addFile(ctx context.Context, p *partWriter, e entry, buf []byte) (*catalog.File, error) {
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
	return u.writeEntry(ctx, p, e.rel, e.link, f, fi.Size(), fi.Mode().Perm(), fi.ModTime(), buf)
}

// writeEntry appends one tar entry announcing size bytes and copies at
// most size bytes from r into it. If r ends early (the file shrank while
// it was read), the entry is padded with zeros to size and the manifest
// entry records the bytes actually read: a restore writes exactly those.
func (u *uploader) writeEntry(ctx context.Context, p *partWriter, rel, link string, r io.Reader, size int64, mode fs.FileMode, mtime time.Time, buf []byte) (*catalog.File, error) {
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
		k, rerr := r.Read(buf[:want])
		if k > 0 {
			if _, err := p.tw.Write(buf[:k]); err != nil {
				return nil, fmt.Errorf("write part %s: %s: %w", p.name, rel, err)
			}
			crc.Write(buf[:k])
			n += int64(k)
			u.prog.addBytes(int64(k))
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
	u.prog.addFile()
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
	f, err := u.writeEntry(ctx, p, controlFilePath, "", bytes.NewReader(data), int64(len(data)), mode.Perm(), mtime, make([]byte, 64<<10))
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
// only saves space.
func (u *uploader) removeStored(ctx context.Context) error {
	u.mu.Lock()
	keys := append([]string(nil), u.stored...)
	u.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	return u.st.Delete(ctx, keys...)
}
