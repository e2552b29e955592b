//go:build linux

package basebackup

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// TestDeltaIgnoresMTime (TRAPS.md 17): a delta never skips a file because
// its size and mtime are those the base backup recorded. After a full
// backup, a relation page (LSN past the full's start), a visibility map
// page (LSN unchanged: the VM is not fully WAL-logged), a configuration
// file and a pg_xact file are rewritten with the same size, and each
// file's mtime is set back to exactly the one the full backup's manifest
// records. The delta must store every change, and restoring the chain
// must give the changed bytes.
func TestDeltaIgnoresMTime(t *testing.T) {
	t.Parallel()
	st := newMem()
	d := newRelDir(t)
	old := pg.LSN(0x2000000) // before the full backup
	d.rel("base/5/16384", old, old, old)
	d.rel("base/5/16384_vm", old)
	d.rel("base/5/16385", old, old) // really unchanged: the control case
	writeFile(t, filepath.Join(d.pgdata, "postgresql.conf"), "work_mem = 4MB\n")
	writeFile(t, filepath.Join(d.pgdata, "pg_xact/0000"), strings.Repeat("\x00", testBS))
	full := mustPush(t, st, d, "base_full", nil, fullStart)
	atFull := d.snapshot()

	changed := []string{"base/5/16384", "base/5/16384_vm", "postgresql.conf", "pg_xact/0000"}
	seen := map[string]time.Time{}
	for _, p := range changed {
		f := full.File(p)
		if f == nil {
			t.Fatalf("the full backup has no %s", p)
		}
		fi, err := os.Stat(d.abs(p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(f.MTime) || fi.Size() != f.Size {
			t.Fatalf("test setup: %s is %d bytes, mtime %s; the full backup recorded %d bytes, %s", p, fi.Size(), fi.ModTime(), f.Size, f.MTime)
		}
		seen[p] = f.MTime
	}

	// Same-size rewrites, as a real write would make them.
	d.setPage("base/5/16384", 1, 0x4000000, 0x55) // page LSN past the full's start
	d.setPage("base/5/16384_vm", 0, old, 0x66)    // an unlogged VM change: old LSN
	writeFile(t, filepath.Join(d.pgdata, "postgresql.conf"), "work_mem = 8MB\n")
	xact := []byte(strings.Repeat("\x00", testBS))
	xact[17] = 0x55 // two transactions marked committed
	writeFile(t, filepath.Join(d.pgdata, "pg_xact/0000"), string(xact))
	for _, p := range changed {
		if err := os.Chtimes(d.abs(p), seen[p], seen[p]); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(d.abs(p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(seen[p]) || fi.Size() != full.File(p).Size {
			t.Fatalf("test setup: %s is %d bytes, mtime %s; want %d bytes, %s", p, fi.Size(), fi.ModTime(), full.File(p).Size, seen[p])
		}
	}
	want := d.snapshot()
	for _, p := range changed {
		if want[p] == atFull[p] {
			t.Fatalf("test setup: %s did not change", p)
		}
	}

	d1 := mustPush(t, st, d, "base_d1", full, delta1Start)
	k := kinds(d1)
	if k["base/5/16384"] != "increment:1" {
		t.Errorf("base/5/16384 (one page changed, same size and mtime) is stored as %q, want increment:1", k["base/5/16384"])
	}
	for _, p := range changed[1:] {
		if k[p] != "whole" {
			t.Errorf("%s (changed, same size and mtime) is stored as %q, want whole", p, k[p])
		}
	}
	if k["base/5/16385"] != "unchanged@base_full" {
		t.Errorf("base/5/16385 (not changed) is stored as %q, want unchanged@base_full", k["base/5/16385"])
	}

	got, err := restoreFiles(t, st, "base_d1")
	if err != nil {
		t.Fatalf("restore base_d1: %v", err)
	}
	for _, p := range changed {
		switch {
		case got[p] == want[p]:
		case got[p] == atFull[p]:
			t.Errorf("restore base_d1: %s holds its content of the full backup: the change was skipped", p)
		default:
			t.Errorf("restore base_d1: %s differs from the data directory (%d bytes, want %d)", p, len(got[p]), len(want[p]))
		}
	}
	checkRestore(t, st, "base_d1", want)
}

// tornControl returns two pg_control images of system testSysID, older
// and newer (another checkpoint location), and torn: the first 64 bytes of
// newer over the rest of older, what a read racing an in-place rewrite of
// the file can see. Its CRC does not match.
func tornControl(t *testing.T) (older, newer, torn []byte) {
	t.Helper()
	older = controlImage()
	newer = controlImage()
	le := binary.LittleEndian
	le.PutUint64(newer[32:], 0x9000060) // checkPoint
	le.PutUint32(newer[288:], crc32.Checksum(newer[:288], crc32.MakeTable(crc32.Castagnoli)))
	torn = append(append([]byte(nil), newer[:64]...), older[64:]...)
	for name, b := range map[string][]byte{"older": older, "newer": newer} {
		if _, err := pg.ParseControlFile(b); err != nil {
			t.Fatalf("test setup: %s image: %v", name, err)
		}
	}
	if _, err := pg.ParseControlFile(torn); !errors.Is(err, pg.ErrControlCRC) {
		t.Fatalf("test setup: the torn image parses with %v, want a CRC mismatch", err)
	}
	return older, newer, torn
}

// TestControlFileCRCFailurePersists (TRAPS.md 12): a pg_control whose CRC
// never matches fails the backup, full or delta, with an error that names
// global/pg_control and wraps pg.ErrControlCRC; no manifest is written, so
// the repository lists no new backup, and every part already stored is
// one the backup's cleanup removes. The check Push makes before
// pg_backup_start (checkDataDir) refuses the same file.
func TestControlFileCRCFailurePersists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		full bool // take a good full backup first, then a delta over it
	}{{"full", false}, {"delta", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := newMem()
			d := newRelDir(t)
			d.rel("base/5/16384", 0x2000000, 0x2000000)
			var base *catalog.Manifest
			var before []string
			if tc.full {
				base = mustPush(t, st, d, "base_full", nil, fullStart)
				before = []string{"base_full"}
			}
			_, _, torn := tornControl(t)
			writeFile(t, filepath.Join(d.pgdata, filepath.FromSlash(controlFilePath)), string(torn))

			start := time.Now()
			_, up, err := pushBackup(t, st, d, "base_bad", base, delta1Start, false)
			if err == nil {
				t.Fatal("a backup over a pg_control whose CRC never matches succeeded")
			}
			t.Logf("error after %s: %v", time.Since(start).Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), controlFilePath) || !errors.Is(err, pg.ErrControlCRC) {
				t.Errorf("error %q does not name %s or does not wrap pg.ErrControlCRC", err, controlFilePath)
			}
			if _, err := st.Stat(ctx, repo.ManifestKey("base_bad")); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("manifest of the failed backup: Stat = %v, want not found", err)
			}
			bs, err := catalog.ListBackups(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for _, b := range bs {
				listed = append(listed, b.Name)
			}
			if strings.Join(listed, " ") != strings.Join(before, " ") {
				t.Errorf("backups listed after the failure: %v, want %v", listed, before)
			}
			// Push's cleanup removes what the uploader recorded as stored:
			// nothing of the failed backup may be left after it.
			if _, err := up.removeStored(ctx); err != nil {
				t.Fatal(err)
			}
			var left []string
			st.List(ctx, repo.BackupsPrefix+"base_bad/", func(o storage.ObjectInfo) error { left = append(left, o.Key); return nil })
			if len(left) != 0 {
				t.Errorf("objects of the failed backup left after its cleanup: %v", left)
			}

			_, _, err = checkDataDir(d.pgdata, pg.Info{SystemIdentifier: testSysID, DataDirectory: d.pgdata})
			if err == nil || !strings.Contains(err.Error(), "pg_control") || !errors.Is(err, pg.ErrControlCRC) {
				t.Errorf("checkDataDir over a pg_control whose CRC never matches: %v", err)
			}
		})
	}
}

// TestControlFileTornReadRetried (TRAPS.md 12): when the first reads of
// pg_control are torn (CRC mismatch) and a later one is whole, the backup
// succeeds and stores the whole image, which a restore gives back byte for
// byte. global/pg_control is a FIFO fed by a goroutine, one image per
// open, so that successive reads see different content deterministically
// whatever the timing.
func TestControlFileTornReadRetried(t *testing.T) {
	t.Parallel()
	if _, err := os.ReadDir("/proc/self/fd"); err != nil {
		t.Fatalf("needs /proc/self/fd to tell when a read of the FIFO ended: %v", err)
	}
	for _, torn := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d torn reads", torn), func(t *testing.T) {
			t.Parallel()
			st := newMem()
			d := newRelDir(t)
			d.rel("base/5/16384", 0x2000000, 0x2000000)
			_, newer, tornImage := tornControl(t)
			ctl := filepath.Join(d.pgdata, filepath.FromSlash(controlFilePath))
			if err := os.Remove(ctl); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(ctl, 0o600); err != nil {
				t.Fatalf("cannot make a FIFO: %v", err)
			}
			reads := feedFIFO(t, ctl, func(i int) []byte {
				if i < torn {
					return tornImage
				}
				return newer
			})

			m, _, err := pushBackup(t, st, d, "base_full", nil, fullStart, false)
			if err != nil {
				t.Fatalf("backup with %d torn read(s) of pg_control: %v", torn, err)
			}
			if n := reads(); n <= torn {
				t.Errorf("pg_control was opened %d times, fewer than the %d torn reads plus one", n, torn)
			}
			f := m.File(controlFilePath)
			if f == nil || f.Size != int64(len(newer)) || f.CRC32C != crcOf(string(newer)) {
				t.Fatalf("manifest entry of pg_control: %+v, want %d bytes with CRC %s (the whole image)", f, len(newer), crcOf(string(newer)))
			}
			got, err := restoreFiles(t, st, "base_full")
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			if !bytes.Equal([]byte(got[controlFilePath]), newer) {
				t.Errorf("restored pg_control (%d bytes) is not the whole image read last", len(got[controlFilePath]))
			}
		})
	}
}

// feedFIFO serves the FIFO at path from a goroutine: the i-th open for
// reading (from 0) reads content(i) and then end of file. It waits for
// each reader to close the FIFO before it serves the next open, so no read
// sees two images. It returns the number of opens served so far. The
// goroutine ends with the test.
func feedFIFO(t *testing.T, path string, content func(i int) []byte) func() int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Int32
	done, exited := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(exited)
		for i := 0; ; i++ {
			w, err := os.OpenFile(path, os.O_WRONLY, 0) // blocks until a reader opens
			if err != nil {
				errc <- err
				return
			}
			select {
			case <-done:
				w.Close()
				return
			default:
			}
			served.Add(1)
			_, werr := w.Write(content(i))
			if cerr := w.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				errc <- werr
				return
			}
			// The reader sees end of file now; wait until it closed the
			// FIFO, or the next open would join its read.
			for openInProcess(fi) {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		// Release a writer blocked in open.
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		<-exited
		if err == nil {
			syscall.Close(fd)
		}
		select {
		case err := <-errc:
			t.Errorf("feeding %s: %v", path, err)
		default:
		}
	})
	return func() int { return int(served.Load()) }
}

// openInProcess reports whether a file descriptor of this process refers
// to the file fi.
func openInProcess(fi os.FileInfo) bool {
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	for _, de := range des {
		if st, err := os.Stat("/proc/self/fd/" + de.Name()); err == nil && os.SameFile(st, fi) {
			return true
		}
	}
	return false
}
