package basebackup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
)

// damagePage writes block blk of the relation file rel of d as a page with
// a sound header and LSN lsn whose body changed after its checksum was
// computed, and returns the bytes written.
func damagePage(t *testing.T, d *relDir, rel string, blk int, lsn pg.LSN) []byte {
	t.Helper()
	rf, ok := pg.ParseRelFilePath(rel)
	if !ok {
		t.Fatalf("%s is not a relation file path", rel)
	}
	forkBlock := uint32(rf.Segment*testRelSeg + blk)
	p := page(lsn, forkBlock, 0x3c)
	p[testBS-1] ^= 0xFF
	if pg.PageChecksum(p, forkBlock) == pg.ParsePageHeader(p).Checksum || pg.ValidatePageHeader(p, testBS) != nil {
		t.Fatalf("test setup: the damaged page of %s block %d has a valid checksum or an unsound header", rel, blk)
	}
	f, err := os.OpenFile(d.abs(rel), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, int64(blk)*testBS); err != nil {
		t.Fatal(err)
	}
	return p
}

// rewrittenFile is a relation file that another process finishes writing
// while the backup reads it. It reads as the *os.File addFile opens: Read
// is the sequential read writeEntry stores, ReadAt the read again of
// pageChecker. When the first sequential read that covers block blk has
// returned, and before anything else reads the file, the writer completes
// the block with page. No production code is changed: the hook sits in the
// one place a test can put it deterministically, between the two reads.
type rewrittenFile struct {
	*os.File
	w         *os.File // the writer's handle
	blk       int64
	page      []byte
	firstRead []byte // block blk as the first sequential read returned it
	rereads   int    // ReadAt calls covering block blk after the write completed
}

func (f *rewrittenFile) Read(p []byte) (int, error) {
	off, err := f.File.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	n, err := f.File.Read(p)
	if at := f.blk*testBS - off; f.firstRead == nil && at >= 0 && at+testBS <= int64(n) {
		f.firstRead = bytes.Clone(p[at : at+testBS])
		if _, werr := f.w.WriteAt(f.page, f.blk*testBS); werr != nil {
			return n, fmt.Errorf("complete the write of block %d: %w", f.blk, werr)
		}
	}
	return n, err
}

func (f *rewrittenFile) ReadAt(p []byte, off int64) (int, error) {
	if f.firstRead != nil && off <= f.blk*testBS && f.blk*testBS+testBS <= off+int64(len(p)) {
		f.rereads++
	}
	return f.File.ReadAt(p, off)
}

// TestFullBackupRereadsTornPage (TRAPS.md 22): a relation file stored whole
// by a full backup, whose block 1 the first read returns torn (the first
// half of the old page, header, LSN before the start and checksum included,
// with the second half of the new one) and a read again returns complete,
// is stored with the page as read again: the backup reports no checksum
// failure, the manifest's CRC is that of the complete file, and a restore
// gives it byte for byte. The complete page's LSN is either past the start
// (a real write) or before it, so the second copy must be accepted on its
// own checksum, not as torn in flight. Without the read again, or if the
// first copy were stored, the test fails.
func TestFullBackupRereadsTornPage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lsn  pg.LSN // of the page once written
	}{
		{"new page past the start", fullStart + 0x10},
		{"new page before the start", 0x2800000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			st := newMem()
			d := newRelDir(t)
			old := pg.LSN(0x2000000)
			d.rel("base/5/16385", old, old)

			// The torn file, outside the data directory so that the
			// walk does not store it a second time; a segment .1, so
			// that checksums use the fork block number.
			const rel, blk = "base/5/16384.1", 1
			forkBlock := uint32(1*testRelSeg + blk)
			before := page(old, forkBlock, 1)
			after := page(tc.lsn, forkBlock, 2)
			torn := slices.Concat(before[:testBS/2], after[testBS/2:])
			if pg.PageChecksum(torn, forkBlock) == pg.ParsePageHeader(torn).Checksum || pg.ParsePageHeader(torn).LSN >= fullStart {
				t.Fatal("test setup: the torn page passes verification or would count as written in flight")
			}
			src := filepath.Join(t.TempDir(), "16384.1")
			writeFile(t, src, string(slices.Concat(page(old, 1*testRelSeg, 3), torn, page(old, 1*testRelSeg+2, 4))))
			r, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			w, err := os.OpenFile(src, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			rw := &rewrittenFile{File: r, w: w, blk: blk, page: after}
			fi, err := r.Stat()
			if err != nil {
				t.Fatal(err)
			}

			// A full backup: the data directory by copyDataDir, the torn
			// file as addFile stores a relation file whole, with the
			// uploader's settings.
			name := "base_full"
			up := &uploader{st: st, enc: testEncoder(t), backup: name, partSize: 64 << 10, prog: progress.New(nil, "test", "files"),
				read: readSettings{verify: true, blockSize: testBS, relSegSize: testRelSeg, startLSN: fullStart}}
			cp, err := copyDataDir(ctx, up, d.pgdata, 2)
			if err != nil {
				t.Fatalf("copy data directory: %v", err)
			}
			rf, _ := pg.ParseRelFilePath(rel)
			chk := newPageChecker(rw, rf, up.read)
			p := up.startPart(ctx)
			stored, err := up.writeEntry(ctx, p, rel, "", rw, fi.Size(), fi.Mode().Perm(), fi.ModTime(), make([]byte, copyBufferSize), chk)
			if err != nil {
				p.abort(err)
				t.Fatalf("store %s: %v", rel, err)
			}
			if err := up.finishPart(p); err != nil {
				t.Fatal(err)
			}
			up.found.add(rel, chk.failed, &chk.lsn, up.read.startLSN)

			if !bytes.Equal(rw.firstRead, torn) {
				t.Fatal("test setup: the first read did not see the torn page")
			}
			if rw.rereads == 0 {
				t.Errorf("%s block %d failed verification but was not read again", rel, blk)
			}
			if err := up.found.checksumError(); err != nil || len(chk.failed) != 0 {
				t.Fatalf("a page torn on the first read and complete on the second is reported: %v (failed blocks %v)", err, chk.failed)
			}
			complete, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Size != int64(len(complete)) || stored.CRC32C != crcOf(string(complete)) {
				t.Fatalf("%s stored as %d bytes with CRC %s; the complete file is %d bytes with CRC %s (the torn copy would be %s)",
					rel, stored.Size, stored.CRC32C, len(complete), crcOf(string(complete)),
					crcOf(string(slices.Concat(complete[:blk*testBS], torn, complete[(blk+1)*testBS:]))))
			}

			m := cp.manifest(name, up.parts, []pg.Tablespace{{OID: 16400, Name: "ts1", Location: d.spc}})
			m.Files = append(m.Files, *stored)
			slices.SortFunc(m.Files, func(a, b catalog.File) int { return strings.Compare(a.Path, b.Path) })
			m.DataSize += stored.Size
			fillHeader(m)
			m.StartLSN, m.FinishLSN = fullStart, fullStart+0x110
			m.DataChecksums = true
			setDelta(m, nil, testBS)
			if err := catalog.WriteManifest(ctx, st, m); err != nil {
				t.Fatalf("write manifest: %v", err)
			}
			want := d.snapshot()
			want[rel] = string(complete)
			checkRestore(t, st, name, want)
		})
	}
}

// TestFullBackupTornInFlight (TRAPS.md 22): in a full backup, a page that
// fails its checksum on both reads but has a sound header and an LSN past
// the backup's start (and one exactly at it, the boundary) was being
// written during the backup: the backup succeeds, does not count the pages
// as checksum failures, stores the files whole, and a restore gives the
// pages as read (WAL replay repairs them).
func TestFullBackupTornInFlight(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	old := pg.LSN(0x2000000)
	d.rel("base/5/16384", old, old, old)
	d.rel("base/5/16385.1", old, old)
	damagePage(t, d, "base/5/16384", 1, fullStart+0x10)
	damagePage(t, d, "base/5/16385.1", 0, fullStart)
	want := d.snapshot()

	m, up, err := pushBackup(t, st, d, "base_full", nil, fullStart, false)
	if err != nil {
		t.Fatalf("full backup over pages torn in flight: %v", err)
	}
	if w := up.found.checksumWarnings(); w != nil {
		t.Errorf("pages torn in flight are counted as checksum failures: %v", w)
	}
	if k := kinds(m); k["base/5/16384"] != "whole" || k["base/5/16385.1"] != "whole" {
		t.Errorf("the files with pages torn in flight are stored as %q and %q, want whole", k["base/5/16384"], k["base/5/16385.1"])
	}
	checkRestore(t, st, "base_full", want)
}

// TestFullBackupChecksumFailureBeforeStart (TRAPS.md 22): in a full backup,
// a page that fails its checksum on both reads with an LSN just before the
// backup's start is damaged, not torn in flight: the backup fails naming
// the segment file and the block in it (not the fork block number), and
// only that page (a page torn in flight in another file is not named), and
// no manifest is stored.
func TestFullBackupChecksumFailureBeforeStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := newMem()
	d := newRelDir(t)
	old := pg.LSN(0x2000000)
	d.rel("base/5/16384", old, old, old)
	d.rel("base/5/16386.1", old, old)
	damagePage(t, d, "base/5/16384", 1, fullStart+0x10) // torn in flight
	damagePage(t, d, "base/5/16386.1", 1, fullStart-1)  // damaged

	m, _, err := pushBackup(t, st, d, "base_full", nil, fullStart, false)
	if err == nil {
		t.Fatal("a full backup over a damaged page succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "1 page(s)") || !strings.Contains(msg, "base/5/16386.1 block 1") ||
		strings.Contains(msg, "16384") || strings.Contains(msg, "block 5") {
		t.Errorf("full backup over a damaged page: %v; want it to name base/5/16386.1 block 1 only", err)
	}
	if m != nil {
		t.Error("a failed backup returned a manifest")
	}
	if _, err := catalog.ReadManifest(ctx, st, "base_full"); !errors.Is(err, catalog.ErrNoBackup) {
		t.Errorf("after a failed backup, reading its manifest gives %v, want %v", err, catalog.ErrNoBackup)
	}
}
