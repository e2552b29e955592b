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

// blockCount is the number of pages, the last maybe partial, of size
// bytes.
func blockCount(size int64, bs int) int64 { return (size + int64(bs) - 1) / int64(bs) }

// planChain works out, from the manifests alone, which copy of which file
// a restore of links[0] reads. Any inconsistency between the links is an
// error wrapping catalog.ErrBrokenChain that names the backups.
func planChain(links []*catalog.Manifest) (*chainPlan, error) {
	pl := &chainPlan{links: links, blockSize: links[0].BlockSize}
	for _, l := range links {
		byPart := map[string]map[string]*catalog.File{}
		for i := range l.Files {
			f := &l.Files[i]
			if f.Kind != catalog.FileWhole && f.Kind != catalog.FileIncrement {
				continue
			}
			if byPart[f.Part] == nil {
				byPart[f.Part] = map[string]*catalog.File{}
			}
			byPart[f.Part][f.Path] = f
		}
		pl.stored = append(pl.stored, byPart)
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

// sourcesOf follows the path of f down the chain.
func (pl *chainPlan) sourcesOf(f *catalog.File) (*fileRestore, error) {
	fr := &fileRestore{f: f}
	links := pl.links
	e, source := f, ""
	for li := 0; ; li++ {
		l := links[li]
		if li > 0 {
			above := e
			if e = l.File(f.Path); e == nil || (e.Kind != catalog.FileWhole && e.Kind != catalog.FileIncrement && e.Kind != catalog.FileUnchanged) {
				return nil, fmt.Errorf("%w: backup %s records %s as %s over backup %s, which holds no such file", catalog.ErrBrokenChain, links[li-1].Name, f.Path, above.Kind, l.Name)
			}
			if (above.Kind == catalog.FileUnchanged && e.Size != above.Size) || (above.Kind == catalog.FileIncrement && e.Size > above.Size) {
				return nil, fmt.Errorf("%w: backup %s records %s as %s of %d bytes over a copy of %d bytes in backup %s", catalog.ErrBrokenChain, links[li-1].Name, f.Path, above.Kind, above.Size, e.Size, l.Name)
			}
		}
		if e.Kind == catalog.FileUnchanged {
			if li == len(links)-1 || (source != "" && e.Source != source) {
				return nil, fmt.Errorf("%w: backup %s records %s as unchanged since %s, which is not in its chain", catalog.ErrBrokenChain, l.Name, f.Path, e.Source)
			}
			source = e.Source
			continue
		}
		if source != "" && source != l.Name {
			return nil, fmt.Errorf("%w: %s is recorded as unchanged since backup %s, but the next copy down the chain is in backup %s", catalog.ErrBrokenChain, f.Path, source, l.Name)
		}
		source = ""
		fr.sources = append(fr.sources, restoreSource{link: li, e: e})
		if e.Kind == catalog.FileWhole || e.Blocks == blockCount(e.Size, pl.blockSize) {
			// Stored whole, or an increment of every page: older copies
			// cannot add a page below its size, and none is larger.
			return fr, nil
		}
		if li == len(links)-1 {
			return nil, fmt.Errorf("%w: no backup of the chain of %s stores %s whole", catalog.ErrBrokenChain, links[0].Name, f.Path)
		}
	}
}

// applySource writes into fr's file its next source, the entry e of part
// of link li, read from r (the tar entry, e's stored bytes).
func (w *restorer) applySource(ctx context.Context, li int, part catalog.Part, fr *fileRestore, e *catalog.File, r io.Reader, buf []byte) error {
	if fr.next >= len(fr.sources) || fr.sources[fr.next].link != li || fr.sources[fr.next].e != e {
		return fmt.Errorf("restore %s: part %s of backup %s is not its next copy (internal error)", fr.f.Path, part.Name, w.links[li].Name)
	}
	if len(fr.sources) == 1 && e.Kind == catalog.FileWhole {
		fr.next++
		if li == 0 {
			return w.writeFile(ctx, part, fr.f, io.LimitReader(r, e.Size), buf)
		}
		// Unchanged since link li: that copy, with the newest mode and time.
		merged := *e
		merged.Mode, merged.MTime = fr.f.Mode, fr.f.MTime
		if err := w.writeFile(ctx, part, &merged, io.LimitReader(r, e.Size), buf); err != nil {
			return fmt.Errorf("backup %s: %w", w.links[li].Name, err)
		}
		return nil
	}
	if err := w.applyChained(ctx, li, fr, e, r); err != nil {
		return fmt.Errorf("part %s of backup %s: %w", part.Name, w.links[li].Name, err)
	}
	return nil
}

// applyChained applies one source of a file restored from several, and
// completes the file after the last.
func (w *restorer) applyChained(ctx context.Context, li int, fr *fileRestore, e *catalog.File, r io.Reader) (err error) {
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
	fr.created = true
	if fr.done == nil {
		fr.done = &delta.BlockSet{}
	}
	defer func() {
		if out != nil {
			out.Close()
		}
	}()
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
	dst := &progressWriterAt{w: out, prog: w.prog}
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
	if counted.n != storedSize {
		return fmt.Errorf("restore %s: %d bytes read, the manifest says %d: %w", name, counted.n, storedSize, repo.ErrChecksum)
	}
	if got := crcString(crc.Sum32()); got != e.CRC32C {
		return fmt.Errorf("restore %s: crc32c %s, the manifest says %s: %w", name, got, e.CRC32C, repo.ErrChecksum)
	}
	fr.next++
	if fr.next < len(fr.sources) {
		err = out.Close()
		out = nil
		if err != nil {
			return fmt.Errorf("restore %s: %w", fr.f.Path, err)
		}
		return nil
	}
	// The last source: the file is complete.
	fr.done = nil
	err = out.Truncate(fr.f.Size)
	if err == nil {
		err = out.Chmod(fs.FileMode(fr.f.Mode) | 0o600)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	out = nil
	if err != nil {
		return fmt.Errorf("restore %s: %w", fr.f.Path, err)
	}
	if err := os.Chtimes(p, fr.f.MTime, fr.f.MTime); err != nil {
		return fmt.Errorf("restore %s: set time: %w", fr.f.Path, err)
	}
	w.prog.addFile()
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

// progressWriterAt counts the bytes written for the progress line.
type progressWriterAt struct {
	w    io.WriterAt
	prog *progress
}

func (p *progressWriterAt) WriteAt(b []byte, off int64) (int, error) {
	n, err := p.w.WriteAt(b, off)
	p.prog.addBytes(int64(n))
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
