package basebackup

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/delta"
	"github.com/walrusdb/walrus/repo"
)

// A restore of a delta reads its chain: the backup restored (link 0), the
// backup it is based on (link 1), ..., the full backup at its root. The
// newest manifest is the list of files: a file deleted between backups is
// simply not in it. Each regular file is written from its sources, newest
// first (TRAPS.md 20):
//
//   - a file stored whole in the backup restored, or unchanged down to a
//     backup that stores it whole, has one source and is streamed as is;
//   - otherwise its sources are its increments, newest first, down to the
//     first copy stored whole or to an increment that holds every page.
//     A delta.BlockSet per file records the pages written, so that each
//     page comes from the newest backup that holds it and is written once;
//     the file is finally truncated to its size in the backup restored.
//
// The sources are known from the manifests alone, so the restore is
// planned, and every part of every link checked, before anything is
// written. The parts are then streamed link by link, newest first, the
// parts of one link in parallel; a part of an older link is downloaded only
// if it holds a source still needed. Within a link a file has at most one
// source, so no two workers write one file; the links run one after the
// other, which orders the writes to a file newest first.

// restoreSource is one backup's copy of a file that a restore reads.
type restoreSource struct {
	link int           // index in the chain; 0 is the backup restored
	e    *catalog.File // that backup's entry: FileWhole or FileIncrement
}

// fileRestore is how one regular file of the restored backup is written.
type fileRestore struct {
	f       *catalog.File   // the entry in the backup restored
	sources []restoreSource // newest first
	// Updated only by the one worker that applies the next source.
	next    int
	created bool
	done    *delta.BlockSet
}

// chainPlan is a restore planned from the chain's manifests.
type chainPlan struct {
	links     []*catalog.Manifest
	blockSize int
	files     []*fileRestore
	// stored[link][part][path] is every file or increment the link's
	// manifest places in the part; needs[link][part][path] those the
	// restore reads.
	stored []map[string]map[string]*catalog.File
	needs  []map[string]map[string]*fileRestore
}

// planChain works out, from the manifests alone, which copy of which file
// a restore of links[0] reads. Any inconsistency between the links is an
// error wrapping catalog.ErrBrokenChain that names the backups.
func planChain(links []*catalog.Manifest) (*chainPlan, error) {
	pl := &chainPlan{links: links, blockSize: links[0].BlockSize}
	for _, l := range links {
		pl.stored = append(pl.stored, l.PartIndex())
		pl.needs = append(pl.needs, map[string]map[string]*fileRestore{})
	}
	for i := range links[0].Files {
		f := &links[0].Files[i]
		switch f.Kind {
		case catalog.FileWhole, catalog.FileIncrement, catalog.FileUnchanged:
		default:
			continue
		}
		fr, err := pl.sourcesOf(f)
		if err != nil {
			return nil, err
		}
		if (f.Path == controlFilePath || f.Path == versionFilePath) && (len(fr.sources) != 1 || fr.sources[0].link != 0 || f.Kind != catalog.FileWhole) {
			return nil, fmt.Errorf("%w: backup %s does not store %s whole", catalog.ErrBrokenChain, links[0].Name, f.Path)
		}
		pl.files = append(pl.files, fr)
		for _, s := range fr.sources {
			need := pl.needs[s.link]
			if need[s.e.Part] == nil {
				need[s.e.Part] = map[string]*fileRestore{}
			}
			need[s.e.Part][f.Path] = fr
		}
	}
	return pl, nil
}

// sourcesOf follows the path of f down the chain (catalog.FileSources).
func (pl *chainPlan) sourcesOf(f *catalog.File) (*fileRestore, error) {
	srcs, err := catalog.FileSources(pl.links, f)
	if err != nil {
		return nil, err
	}
	fr := &fileRestore{f: f}
	for _, s := range srcs {
		fr.sources = append(fr.sources, restoreSource{link: s.Link, e: s.Entry})
	}
	return fr, nil
}

// applySource writes into fr's file, through wb, its next source, the
// entry e of part of link li, read from r (the tar entry, e's stored
// bytes).
func (w *restorer) applySource(ctx context.Context, li int, part catalog.Part, fr *fileRestore, e *catalog.File, r io.Reader, wb *writeBehind) error {
	if fr.next >= len(fr.sources) || fr.sources[fr.next].link != li || fr.sources[fr.next].e != e {
		return fmt.Errorf("restore %s: part %s of backup %s is not its next copy (internal error)", fr.f.Path, part.Name, w.links[li].Name)
	}
	if len(fr.sources) == 1 && e.Kind == catalog.FileWhole {
		fr.next++
		if li == 0 {
			return w.writeFile(ctx, part, fr.f, io.LimitReader(r, e.Size), wb)
		}
		// Unchanged since link li: that copy, with the newest mode and time.
		merged := *e
		merged.Mode, merged.MTime = fr.f.Mode, fr.f.MTime
		if err := w.writeFile(ctx, part, &merged, io.LimitReader(r, e.Size), wb); err != nil {
			return fmt.Errorf("backup %s: %w", w.links[li].Name, err)
		}
		return nil
	}
	if err := w.applyChained(ctx, li, fr, e, r, wb); err != nil {
		return fmt.Errorf("part %s of backup %s: %w", part.Name, w.links[li].Name, err)
	}
	return nil
}

// applyChained applies one source of a file restored from several, and
// completes the file after the last. The pages are written by wb, which
// closes the file after them (and, after the last source, truncates it,
// sets its mode and time).
func (w *restorer) applyChained(ctx context.Context, li int, fr *fileRestore, e *catalog.File, r io.Reader, wb *writeBehind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := w.pl.target(fr.f.Path)
	if err != nil {
		return err
	}
	flags := os.O_WRONLY | syscall.O_NOFOLLOW
	if !fr.created {
		flags |= os.O_CREATE | os.O_EXCL
	}
	out, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", fr.f.Path, err)
	}
	if !fr.created && fr.f.Size >= directMinSize {
		preallocate(out, fr.f.Size)
	}
	fr.created = true
	if fr.done == nil {
		fr.done = &delta.BlockSet{}
	}
	file := newWBFile(out, w.directChained(fr, e))
	dst := &wbWriterAt{ctx: ctx, w: wb, f: file, prog: w.prog}
	if err := w.applyCopy(li, fr, e, r, dst); err != nil {
		dst.release()
		wb.finish(file, func(error) error { return out.Close() })
		return err
	}
	fr.next++
	if fr.next < len(fr.sources) {
		wb.finish(file, func(error) error {
			if err := out.Close(); err != nil {
				return fmt.Errorf("restore %s: %w", fr.f.Path, err)
			}
			return nil
		})
		return nil
	}
	// The last source: the file is complete once its pages are written.
	fr.done = nil
	f := fr.f
	wb.finish(file, func(werr error) error {
		if werr != nil {
			out.Close()
			return nil // already reported
		}
		err := out.Truncate(f.Size)
		if err == nil {
			err = out.Chmod(fs.FileMode(f.Mode) | 0o600)
		}
		if err == nil {
			startWriteback(out, 0, 0)
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			if err = os.Chtimes(p, f.MTime, f.MTime); err != nil {
				err = fmt.Errorf("set time: %w", err)
			}
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", f.Path, err)
		}
		w.written(p)
		w.prog.AddUnits(1)
		return nil
	})
	return nil
}

// directChained says whether fr's copy e is written with direct I/O: a
// copy stored whole (the root of the chain) of a file of at least
// directMinSize where few pages are written already, so that its writes
// are long runs of adjacent pages. An increment's pages are scattered, so
// are the runs of a whole copy around many pages of newer copies, and a
// small file has few writes: those go through the page cache, which
// gathers them. Padding a partial last page with zeros up to directAlign
// stays within that page only when pages are multiples of directAlign.
func (w *restorer) directChained(fr *fileRestore, e *catalog.File) bool {
	bs := w.chain.blockSize
	if e.Kind != catalog.FileWhole || bs <= 0 || bs%directAlign != 0 || fr.f.Size < directMinSize {
		return false
	}
	blocks := (fr.f.Size + int64(bs) - 1) / int64(bs)
	return fr.done == nil || int64(fr.done.Len())*32 <= blocks
}

// applyCopy reads e, fr's copy in link li, from r and writes the pages
// that no newer copy holds into dst, checking e's size and CRC-32C.
func (w *restorer) applyCopy(li int, fr *fileRestore, e *catalog.File, r io.Reader, dst *wbWriterAt) error {
	name := fr.f.Path + " in backup " + w.links[li].Name
	bs := w.chain.blockSize
	crc := crc32.New(castagnoli)
	var storedSize int64
	if e.Kind == catalog.FileIncrement {
		storedSize = e.StoredSize
	} else {
		storedSize = e.Size
	}
	counted := &countingReader{r: io.TeeReader(io.LimitReader(r, storedSize), crc)}
	if e.Kind == catalog.FileIncrement {
		rd, err := delta.NewReader(counted, name)
		if err != nil {
			return err
		}
		h := rd.Header()
		if h.BlockSize != bs || h.FileSize != e.Size || int64(len(h.Blocks)) != e.Blocks {
			return fmt.Errorf("restore %s: the increment holds %d pages of %d bytes for a file of %d bytes, the manifest says %d pages of %d bytes for %d bytes: %w", name, len(h.Blocks), h.BlockSize, h.FileSize, e.Blocks, bs, e.Size, repo.ErrChecksum)
		}
		if _, err := delta.ApplyIncrement(dst, rd, fr.done, fr.f.Size); err != nil {
			return err
		}
	} else {
		if _, err := delta.ApplyWhole(dst, counted, name, bs, fr.done, fr.f.Size); err != nil {
			return err
		}
	}
	if err := dst.flush(); err != nil {
		return fmt.Errorf("%w: %w", errWriterFailed, err)
	}
	if counted.n != storedSize {
		return fmt.Errorf("restore %s: %d bytes read, the manifest says %d: %w", name, counted.n, storedSize, repo.ErrChecksum)
	}
	if got := crcString(crc.Sum32()); got != e.CRC32C {
		return fmt.Errorf("restore %s: crc32c %s, the manifest says %s: %w", name, got, e.CRC32C, repo.ErrChecksum)
	}
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// checkComplete makes sure every file got all its sources.
func (pl *chainPlan) checkComplete() error {
	for _, fr := range pl.files {
		if fr.next != len(fr.sources) {
			s := fr.sources[fr.next]
			return fmt.Errorf("restore %s: part %s of backup %s did not hold it: the backup is damaged", fr.f.Path, s.e.Part, pl.links[s.link].Name)
		}
	}
	return nil
}

// errChainLink names the link of the chain a failure concerns.
func errChainLink(links []*catalog.Manifest, li int, err error) error {
	if li == 0 || err == nil {
		return err
	}
	return fmt.Errorf("backup %s, which %s is based on through its chain: %w", links[li].Name, links[0].Name, err)
}
