package walpush

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/pg"
)

// Extra is the outcome of one segment that Archive pushed ahead of
// PostgreSQL's request.
type Extra struct {
	// Name is the segment's file name.
	Name string
	// Result is the push's result when Err is nil.
	Result Result
	// Err is why the push, or the writing of its marker, failed. It never
	// fails the requested push.
	Err error
}

// ArchiveResult describes what Archive did.
type ArchiveResult struct {
	// Result is the requested file's.
	Result
	// Extras are the other ready segments pushed in parallel.
	Extras []Extra
}

// Archive is what archive_command runs: it pushes the WAL file at path,
// which PostgreSQL passes as pg_wal/NAME, and with it, in parallel, up to
// opts.Concurrency-1 other segments that PostgreSQL has marked ready
// (pg_wal/archive_status/NAME.ready) and that no earlier call pushed, in
// name order. For each of those it records a marker in
// pg_wal/archive_status/.walrus, so that when PostgreSQL asks for that
// segment the call only confirms it (the file is the one pushed: same
// identity, else same digest; the repository holds the recorded object
// with the recorded checksum and sizes: one Stat) instead of uploading it
// again. A marker that does not confirm is discarded and the file is
// pushed normally: a deleted or different object is never taken for a
// stored one.
//
// The requested file is pushed, or confirmed, before Archive returns, and
// the error is only ever the requested file's: extra pushes that fail are
// reported in Extras and pushed again when PostgreSQL asks for them.
// Archive never marks anything done in archive_status; PostgreSQL does
// that when the command exits 0 (TRAPS.md 5).
func Archive(ctx context.Context, path string, opts Options) (ArchiveResult, error) {
	p := newPusher(opts)
	name := filepath.Base(path)
	walDir := filepath.Dir(path)
	statusDir := filepath.Join(walDir, "archive_status")
	var marks *markers
	if fi, err := os.Stat(statusDir); err == nil && fi.IsDir() {
		marks = &markers{dir: filepath.Join(statusDir, MarkerDirName), repository: opts.Repository, encrypted: opts.Encoder.Encrypted()}
	}
	var extras []string
	if marks != nil && opts.Concurrency > 1 {
		var err error
		if extras, err = marks.pick(statusDir, name, opts.Concurrency-1); err != nil {
			p.logf("wal-push %s: no parallel pushes: %v", name, err)
		}
	}
	out := make([]Extra, len(extras))
	var g errgroup.Group
	g.SetLimit(max(1, opts.Concurrency-1))
	for i, x := range extras {
		g.Go(func() error {
			res, err := p.push(ctx, filepath.Join(walDir, x), nil)
			if err == nil {
				if werr := marks.write(res); werr != nil {
					err = fmt.Errorf("wal-push %s: pushed, but %w", x, werr)
				}
			}
			out[i] = Extra{Name: x, Result: res, Err: err}
			return nil
		})
	}
	reqMarks := marks
	if wf, err := pg.ParseWALFileName(name, pg.MinWALSegSize); err != nil || wf.Kind != pg.SegmentFile {
		reqMarks = nil // markers are only ever written for whole segments
	}
	res, err := p.push(ctx, path, reqMarks)
	g.Wait()
	return ArchiveResult{Result: res, Extras: out}, err
}
