package catalog

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/walrusdb/walrus/internal/progress"

	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/delta"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// castagnoli is the CRC-32C table of the manifest's crc32c fields.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// PartIndex returns, for each part of m, the entries m places in it (whole
// files and increments), by path. A restore and a verification read each
// part against it.
func (m *Manifest) PartIndex() map[string]map[string]*File {
	byPart := map[string]map[string]*File{}
	for i := range m.Files {
		f := &m.Files[i]
		if f.Kind != FileWhole && f.Kind != FileIncrement {
			continue
		}
		if byPart[f.Part] == nil {
			byPart[f.Part] = map[string]*File{}
		}
		byPart[f.Part][f.Path] = f
	}
	return byPart
}

// ReadPart streams one part: it gets the object, decrypts and decompresses
// it and walks its tar entries. Every entry must be a regular file that
// entries (the part's PartIndex) lists, at most once, with a tar size of at
// least the file's size (a whole file: its entry is zero-padded when the
// file shrank while it was read) or exactly the increment's stored size;
// anything else ends the walk with an error. fn is called for each entry,
// on the calling goroutine, with the manifest's entry and the tar entry's
// bytes; what fn leaves unread is skipped, and fn's error is returned as
// is. At the end the stored object must have the recorded size and
// SHA-256 (format 1: the plaintext's SHA-256), the plaintext the recorded
// size (repo.ErrChecksum otherwise), and every entry listed must have
// appeared. Memory is the codec's and the tar reader's buffers, whatever
// the part's size.
func ReadPart(ctx context.Context, st storage.Store, dec *repo.Decoder, part Part, entries map[string]*File, fn func(e *File, r io.Reader) error) error {
	obj, err := st.Get(ctx, part.Key)
	if err != nil {
		return fmt.Errorf("read part %s: %w", part.Name, err)
	}
	defer obj.Close()
	// The stored bytes are checked (format 2), or the plaintext (format 1).
	stored := io.Reader(obj)
	if part.StoredSHA256 != "" {
		stored = repo.VerifyingReader(obj, "part "+part.Name+" (stored object)", part.StoredSHA256, part.StoredSize)
	}
	rc, err := dec.Unwrap(part.Key, stored)
	if err != nil {
		return fmt.Errorf("read part %s: %w", part.Name, err)
	}
	defer rc.Close()
	vr := repo.VerifyingReader(rc, "part "+part.Name, part.SHA256, part.RawSize)
	tr := tar.NewReader(vr)
	seen := make(map[string]bool, len(entries))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read part %s: %w", part.Name, err)
		}
		e, ok := entries[hdr.Name]
		if !ok || seen[hdr.Name] {
			return fmt.Errorf("part %s: refusing tar entry %q: the manifest places no such file in this part", part.Name, hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("part %s: refusing tar entry %q: type %q is not a regular file", part.Name, hdr.Name, hdr.Typeflag)
		}
		if (e.Kind == FileWhole && hdr.Size < e.Size) || (e.Kind == FileIncrement && hdr.Size != e.StoredSize) {
			return fmt.Errorf("part %s: tar entry %q holds %d bytes, the manifest says otherwise", part.Name, hdr.Name, hdr.Size)
		}
		seen[hdr.Name] = true
		if err := fn(e, tr); err != nil {
			return err
		}
	}
	// Read to the end so that the part's sizes and checksum are checked:
	// the plaintext, then whatever the decoder left of the stored bytes
	// (nothing may follow the end of the stream unnoticed).
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return fmt.Errorf("read part %s: %w", part.Name, err)
	}
	if _, err := io.Copy(io.Discard, stored); err != nil {
		return fmt.Errorf("read part %s: %w", part.Name, err)
	}
	if len(seen) < len(entries) {
		var missing []string
		for p := range entries {
			if !seen[p] {
				missing = append(missing, p)
			}
		}
		slices.Sort(missing)
		more := ""
		if len(missing) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(missing)-1)
		}
		return fmt.Errorf("part %s lacks %s%s, which the manifest places in it: the backup is damaged", part.Name, missing[0], more)
	}
	return nil
}

// Source is one backup's copy of a file that a restore of a chain reads.
type Source struct {
	// Link is the index in the chain of the backup holding the copy; 0 is
	// the backup restored.
	Link int
	// Entry is that backup's entry: FileWhole or FileIncrement.
	Entry *File
}

// FileSources follows the path of f, a regular file of links[0], down the
// chain links (newest first, as ReadChain returns it) and returns the
// copies a restore reads, newest first: through "unchanged" entries to the
// backup their source names, through increments to the next link, until a
// copy stored whole or an increment holding every page of the file. Any
// inconsistency between the links is an error wrapping ErrBrokenChain that
// names the backups and the file.
func FileSources(links []*Manifest, f *File) ([]Source, error) {
	var out []Source
	bs := links[0].BlockSize
	e, source := f, ""
	for li := 0; ; li++ {
		l := links[li]
		if li > 0 {
			above := e
			if e = l.File(f.Path); e == nil || (e.Kind != FileWhole && e.Kind != FileIncrement && e.Kind != FileUnchanged) {
				return nil, fmt.Errorf("%w: backup %s records %s as %s over backup %s, which holds no such file", ErrBrokenChain, links[li-1].Name, f.Path, above.Kind, l.Name)
			}
			if (above.Kind == FileUnchanged && e.Size != above.Size) || (above.Kind == FileIncrement && e.Size > above.Size) {
				return nil, fmt.Errorf("%w: backup %s records %s as %s of %d bytes over a copy of %d bytes in backup %s", ErrBrokenChain, links[li-1].Name, f.Path, above.Kind, above.Size, e.Size, l.Name)
			}
		}
		if e.Kind == FileUnchanged {
			if li == len(links)-1 || (source != "" && e.Source != source) {
				return nil, fmt.Errorf("%w: backup %s records %s as unchanged since %s, which is not in its chain", ErrBrokenChain, l.Name, f.Path, e.Source)
			}
			source = e.Source
			continue
		}
		if source != "" && source != l.Name {
			return nil, fmt.Errorf("%w: %s is recorded as unchanged since backup %s, but the next copy down the chain is in backup %s", ErrBrokenChain, f.Path, source, l.Name)
		}
		source = ""
		out = append(out, Source{Link: li, Entry: e})
		if e.Kind == FileWhole || (bs > 0 && e.Blocks == (e.Size+int64(bs)-1)/int64(bs)) {
			// Stored whole, or an increment of every page: older copies
			// cannot add a page below its size, and none is larger.
			return out, nil
		}
		if li == len(links)-1 {
			return nil, fmt.Errorf("%w: no backup of the chain of %s stores %s whole", ErrBrokenChain, links[0].Name, f.Path)
		}
	}
}

// DefaultVerifyConcurrency is the number of parts VerifyBackups reads at
// once unless told otherwise.
const DefaultVerifyConcurrency = 4

// maxProblems bounds the problems kept per backup and kind (chain, data,
// WAL); the rest are counted in one last problem.
const maxProblems = 100

// VerifyOptions configure VerifyBackups.
type VerifyOptions struct {
	// Store is the repository; Decoder decrypts and decompresses parts (an
	// encrypted backup needs its Decryptor).
	Store   storage.Store
	Decoder *repo.Decoder
	// Concurrency is the number of parts read at once; 0 means
	// DefaultVerifyConcurrency.
	Concurrency int
	// Progress, when not nil, receives a redrawn status line (a terminal).
	Progress io.Writer
}

// VerifyReport is what VerifyBackups found. Its JSON form is what
// `walrus backup-verify --json` prints.
type VerifyReport struct {
	// OK is true when every backup verified is intact.
	OK bool `json:"ok"`
	// Backups has one entry per backup verified, in the order asked (for
	// all backups: ListBackups order).
	Backups []BackupCheck `json:"backups"`
}

// BackupCheck is the verification of one backup and its chain.
type BackupCheck struct {
	// Name is the backup's name.
	Name string `json:"name"`
	// Kind is KindFull or KindDelta ("" when the manifest is unreadable).
	Kind string `json:"kind"`
	// OK is true when Problems is empty.
	OK bool `json:"ok"`
	// Chain is the backups a restore reads, newest first: the backup
	// itself, then the one it is based on, ... down to its root.
	Chain []string `json:"chain"`
	// Parts, Files and Bytes count what was read: the parts of the backup
	// and of its chain, the files and increments in them, and their
	// bytes (whole files' sizes plus increments' stored sizes).
	Parts int   `json:"parts"`
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// FirstWAL and LastWAL name the WAL segments from the backup's start
	// to its finish, which must be archived ("" when unknown).
	FirstWAL string `json:"first_wal"`
	LastWAL  string `json:"last_wal"`
	// Problems names everything found wrong; empty when OK.
	Problems []Problem `json:"problems"`
}

// Problem is one thing found wrong.
type Problem struct {
	// Backup is the backup the problem is in: the one verified or a link
	// of its chain.
	Backup string `json:"backup"`
	// Object is the repository key concerned, when one is.
	Object string `json:"object,omitempty"`
	// Part is the part's name, when a part is concerned.
	Part string `json:"part,omitempty"`
	// File is the PGDATA-relative path, when a file is concerned.
	File string `json:"file,omitempty"`
	// Block is the block number in the file's increment, when known.
	Block *uint32 `json:"block,omitempty"`
	// WALFile is the WAL file concerned, when one is.
	WALFile string `json:"wal_file,omitempty"`
	// Message says what is wrong.
	Message string `json:"message"`
}

// String describes the problem on one line.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString("backup " + p.Backup)
	if p.Part != "" {
		b.WriteString(", part " + p.Part)
	}
	if p.Object != "" {
		b.WriteString(" (" + p.Object + ")")
	}
	if p.File != "" {
		b.WriteString(", file " + p.File)
	}
	if p.Block != nil {
		fmt.Fprintf(&b, ", block %d", *p.Block)
	}
	if p.WALFile != "" {
		b.WriteString(", WAL " + p.WALFile)
	}
	return b.String() + ": " + p.Message
}

// problemList keeps at most maxProblems problems and counts the rest.
type problemList struct {
	list    []Problem
	dropped int
}

func (l *problemList) add(p Problem) {
	if len(l.list) < maxProblems {
		l.list = append(l.list, p)
		return
	}
	l.dropped++
}

// all returns the problems, with one more saying how many were left out.
func (l *problemList) all(backup string) []Problem {
	if l.dropped == 0 {
		return l.list
	}
	return append(slices.Clone(l.list), Problem{Backup: backup, Message: fmt.Sprintf("%d more problem(s) of this kind not listed", l.dropped)})
}

// linkCheck is the verification of one backup's own data, shared by every
// backup whose chain holds it.
type linkCheck struct {
	m *Manifest

	mu       sync.Mutex
	problems problemList
	parts    int
	files    int
	bytes    int64
}

func (c *linkCheck) problem(p Problem) {
	p.Backup = c.m.Name
	c.mu.Lock()
	c.problems.add(p)
	c.mu.Unlock()
}

// verifyTarget is one backup asked for.
type verifyTarget struct {
	name   string
	m      *Manifest
	links  []*Manifest
	chain  problemList
	wal    problemList
	first  string
	last   string
	broken bool
}

// VerifyBackups reads every object of each backup named (a name or
// Latest; no names: every backup in the repository) and of its chain:
// each part is present with its recorded stored size, decrypts, decompresses
// and has its recorded plaintext size and SHA-256; its tar entries are
// exactly the files and increments the manifest places in it; every whole
// file has its recorded size and CRC-32C, every increment parses (package
// delta: header, block list, pages, both checksums) and matches its
// recorded file size, page count, stored size and CRC-32C; global/pg_control
// parses and belongs to the backup's system. On an encrypted repository,
// each manifest matches its authenticator (CheckAuthenticator; a missing
// one is a problem too). It checks that every file of
// the backup can be restored from the chain's manifests (FileSources), and
// that the WAL from the backup's start to its finish LSN is archived,
// stored once (WALIndex.Missing).
//
// A problem found is recorded and the verification goes on: one damaged
// part does not hide another. The error is for what stops the
// verification itself: a backup name that does not exist, a repository
// that cannot be listed, a cancelled context, an encrypted backup without
// an identity. Parts of a link shared by several chains are read once;
// Concurrency parts at a time, each streamed, so memory does not grow
// with the size of the backups.
func VerifyBackups(ctx context.Context, opts VerifyOptions, names []string) (*VerifyReport, error) {
	st, dec := opts.Store, opts.Decoder
	if st == nil || dec == nil {
		return nil, errors.New("verify backups: no repository")
	}
	targets, err := verifyTargets(ctx, st, names)
	if err != nil {
		return nil, err
	}
	checks := map[string]*linkCheck{}
	var order []*linkCheck
	var summaries []Backup
	for _, t := range targets {
		if t.m == nil {
			continue
		}
		summaries = append(summaries, t.m.Backup)
		links, err := ReadChain(ctx, st, t.m)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			t.chain.add(Problem{Backup: t.name, Message: err.Error()})
			t.broken = true
			links = []*Manifest{t.m}
		}
		t.links = links
		for _, l := range links {
			if l.Encrypted && dec.Decryptor == nil {
				return nil, fmt.Errorf("verify backup %s: backup %s: %w", t.name, l.Name, repo.ErrNoIdentity)
			}
			if checks[l.Name] == nil {
				checks[l.Name] = &linkCheck{m: l}
				order = append(order, checks[l.Name])
			}
		}
		if !t.broken {
			for i := range t.m.Files {
				f := &t.m.Files[i]
				if f.Kind != FileWhole && f.Kind != FileIncrement && f.Kind != FileUnchanged {
					continue
				}
				if _, err := FileSources(links, f); err != nil {
					t.chain.add(Problem{Backup: t.name, File: f.Path, Message: err.Error()})
				}
			}
		}
	}
	if err := authenticateLinks(ctx, st, dec, order); err != nil {
		return nil, err
	}
	if err := verifyWAL(ctx, st, dec, targets, summaries); err != nil {
		return nil, err
	}
	if err := verifyParts(ctx, opts, order); err != nil {
		return nil, err
	}

	rep := &VerifyReport{OK: true, Backups: []BackupCheck{}}
	for _, t := range targets {
		bc := BackupCheck{Name: t.name, Chain: []string{}, FirstWAL: t.first, LastWAL: t.last}
		bc.Problems = append(bc.Problems, t.chain.all(t.name)...)
		if t.m != nil {
			bc.Kind = t.m.Kind
		}
		for _, l := range t.links {
			c := checks[l.Name]
			bc.Chain = append(bc.Chain, l.Name)
			bc.Parts += c.parts
			bc.Files += c.files
			bc.Bytes += c.bytes
			bc.Problems = append(bc.Problems, c.problems.all(l.Name)...)
		}
		bc.Problems = append(bc.Problems, t.wal.all(t.name)...)
		if bc.Problems == nil {
			bc.Problems = []Problem{}
		}
		bc.OK = len(bc.Problems) == 0
		rep.OK = rep.OK && bc.OK
		rep.Backups = append(rep.Backups, bc)
	}
	return rep, nil
}

// verifyTargets reads the manifests of the backups asked for. A named
// backup that does not exist is an error; a manifest that exists but
// cannot be used is a problem of that backup.
func verifyTargets(ctx context.Context, st storage.Store, names []string) ([]*verifyTarget, error) {
	var targets []*verifyTarget
	seen := map[string]bool{}
	add := func(name string, m *Manifest, err error) {
		t := &verifyTarget{name: name, m: m}
		if err != nil {
			t.chain.add(Problem{Backup: name, Object: repo.ManifestKey(name), Message: err.Error()})
		}
		targets = append(targets, t)
	}
	if len(names) == 0 {
		all, err := listManifestNames(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("verify backups: %w", err)
		}
		if len(all) == 0 {
			return nil, fmt.Errorf("verify backups: %w in the repository: take one with walrus backup-push", ErrNoBackup)
		}
		var good []Backup
		byName := map[string]*Manifest{}
		for _, name := range all {
			m, err := ReadManifest(ctx, st, name)
			if err != nil {
				if ctx.Err() != nil || !errors.Is(err, ErrInvalidManifest) {
					return nil, fmt.Errorf("verify backups: %w", err)
				}
				add(name, nil, err)
				continue
			}
			byName[name] = m
			good = append(good, m.Backup)
		}
		SortBackups(good)
		for _, b := range good {
			add(b.Name, byName[b.Name], nil)
		}
		return targets, nil
	}
	for _, name := range names {
		m, err := Resolve(ctx, st, name)
		if err != nil {
			if ctx.Err() != nil || !errors.Is(err, ErrInvalidManifest) || name == Latest {
				return nil, fmt.Errorf("verify backups: %w", err)
			}
			if !seen[name] {
				seen[name] = true
				add(name, nil, err)
			}
			continue
		}
		if !seen[m.Name] {
			seen[m.Name] = true
			add(m.Name, m, nil)
		}
	}
	return targets, nil
}

// listManifestNames lists the names of the backups that have a manifest.
func listManifestNames(ctx context.Context, st storage.Store) ([]string, error) {
	var names []string
	err := st.List(ctx, repo.BackupsPrefix, func(o storage.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, repo.BackupsPrefix)
		if name, ok := strings.CutSuffix(rest, manifestSuffix); ok && !strings.Contains(name, "/") {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	return names, nil
}

// verifyWAL checks, for each target, that the WAL from its start to its
// finish is archived once.
func verifyWAL(ctx context.Context, st storage.Store, dec *repo.Decoder, targets []*verifyTarget, summaries []Backup) error {
	if len(summaries) == 0 {
		return nil
	}
	SortBackups(summaries)
	segSize, err := DetectWALSegmentSize(ctx, st, dec, summaries)
	if err != nil {
		return fmt.Errorf("verify backups: %w", err)
	}
	if segSize == 0 {
		// No manifest records a size and no segment is archived: every
		// segment is missing whatever the size; PostgreSQL's default names
		// them.
		segSize = 16 << 20
	}
	idx, err := LoadWALIndex(ctx, st, segSize)
	if err != nil {
		return fmt.Errorf("verify backups: %w", err)
	}
	for _, t := range targets {
		if t.m == nil {
			continue
		}
		b := t.m.Backup
		size := segSize
		if pg.ValidWALSegSize(b.WALSegmentSize) {
			size = b.WALSegmentSize
		}
		if size != idx.SegSize {
			if idx, err = LoadWALIndex(ctx, st, size); err != nil {
				return fmt.Errorf("verify backups: %w", err)
			}
		}
		t.first = pg.SegmentName(b.Timeline, pg.SegmentForLSN(b.StartLSN, size), size)
		t.last = pg.SegmentName(b.Timeline, pg.SegmentForLSN(lastByte(b, size), size), size)
		// The same check as wal-verify's for each backup.
		v := &walVerifier{rep: &WALReport{}, idx: idx, missingSeen: map[string]bool{}, ambiguousSeen: map[string]bool{}}
		v.checkBackup(b)
		for _, n := range v.rep.Missing {
			t.wal.add(Problem{Backup: b.Name, WALFile: n, Message: fmt.Sprintf("WAL file %s is not in the archive: replay from the backup's start (%s) to its finish (%s) needs it, so the backup cannot become consistent", n, b.StartLSN, b.FinishLSN)})
		}
		for _, n := range v.rep.Ambiguous {
			t.wal.add(Problem{Backup: b.Name, WALFile: n, Object: strings.Join(idx.Duplicates[n], ", "), Message: fmt.Sprintf("WAL file %s is stored more than once, and wal-fetch refuses it: remove all but one copy", n)})
		}
	}
	return nil
}

// verifyParts reads every part of every link, concurrency at a time.
func verifyParts(ctx context.Context, opts VerifyOptions, checks []*linkCheck) error {
	prog := progress.New(opts.Progress, "verify", "objects")
	for _, c := range checks {
		for _, f := range c.m.Files {
			switch f.Kind {
			case FileWhole:
				prog.AddTotalBytes(f.Size)
			case FileIncrement:
				prog.AddTotalBytes(f.StoredSize)
			}
		}
	}
	stop := prog.Run(ctx)
	defer stop()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, cmpOr(opts.Concurrency, DefaultVerifyConcurrency)))
	for _, c := range checks {
		index := c.m.PartIndex()
		for _, p := range c.m.Parts {
			g.Go(func() error {
				c.verifyPart(gctx, opts.Store, opts.Decoder, p, index[p.Name], prog)
				return gctx.Err()
			})
		}
	}
	err := g.Wait()
	stop()
	if err != nil {
		return fmt.Errorf("verify backups: %w", err)
	}
	return ctx.Err()
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// verifyPart checks one part; what is wrong is recorded as problems.
func (c *linkCheck) verifyPart(ctx context.Context, st storage.Store, dec *repo.Decoder, p Part, entries map[string]*File, prog *progress.Line) {
	info, err := st.Stat(ctx, p.Key)
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, storage.ErrNotFound):
		c.problem(Problem{Object: p.Key, Part: p.Name, Message: fmt.Sprintf("the part is missing from the repository (%d files or increments are stored in it)", len(entries))})
		return
	case err != nil:
		c.problem(Problem{Object: p.Key, Part: p.Name, Message: fmt.Sprintf("stat: %v", err)})
		return
	case info.Size != p.StoredSize:
		c.problem(Problem{Object: p.Key, Part: p.Name, Message: fmt.Sprintf("the part is %d bytes, the manifest says %d", info.Size, p.StoredSize)})
		// Read it anyway: the checks below say what is damaged.
	}
	buf := make([]byte, 64<<10)
	files := 0
	err = ReadPart(ctx, st, dec, p, entries, func(e *File, r io.Reader) error {
		files++
		return c.checkEntry(p, e, r, buf, prog)
	})
	c.mu.Lock()
	c.parts++
	c.files += files
	c.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		c.problem(Problem{Object: p.Key, Part: p.Name, Message: err.Error()})
	}
}

// entryProblem is a problem of one tar entry's content: recorded, and the
// part is read on.
func (c *linkCheck) entryProblem(p Part, e *File, block *uint32, format string, args ...any) {
	c.problem(Problem{Object: p.Key, Part: p.Name, File: e.Path, Block: block, Message: fmt.Sprintf(format, args...)})
}

// checkEntry checks one tar entry's content against its manifest entry.
// Content that does not match is recorded as a problem; only a failure of
// the stream itself (which ends the part) is returned.
func (c *linkCheck) checkEntry(p Part, e *File, r io.Reader, buf []byte, prog *progress.Line) error {
	crc := crc32.New(castagnoli)
	if e.Kind == FileWhole {
		var body []byte
		w := io.Writer(crc)
		if e.Path == "global/pg_control" && e.Size <= 1<<20 {
			body = make([]byte, 0, e.Size)
			w = io.MultiWriter(crc, &sliceWriter{&body})
		}
		n, err := io.CopyBuffer(w, io.LimitReader(r, e.Size), buf)
		prog.AddBytes(n)
		c.addBytes(n)
		if err != nil {
			return fmt.Errorf("read part %s: %s: %w", p.Name, e.Path, err)
		}
		if n != e.Size {
			c.entryProblem(p, e, nil, "%d bytes, the manifest says %d", n, e.Size)
			return nil
		}
		if got := fmt.Sprintf("%08x", crc.Sum32()); got != e.CRC32C {
			c.entryProblem(p, e, nil, "crc32c %s, the manifest says %s: the file's content is damaged", got, e.CRC32C)
			return nil
		}
		if body != nil {
			ctl, err := pg.ParseControlFile(body)
			if err != nil {
				c.entryProblem(p, e, nil, "%v", err)
			} else if strconv.FormatUint(ctl.SystemIdentifier, 10) != c.m.SystemIdentifier {
				c.entryProblem(p, e, nil, "pg_control is of system %d, the manifest says %s", ctl.SystemIdentifier, c.m.SystemIdentifier)
			}
		}
		return nil
	}

	// An increment: parse it as a restore would, page by page.
	cr := &countingReader{r: io.TeeReader(io.LimitReader(r, e.StoredSize), crc)}
	defer func() {
		prog.AddBytes(cr.n)
		c.addBytes(cr.n)
	}()
	name := e.Path + " in backup " + c.m.Name
	corrupt := func(err error, block *uint32) error {
		if errors.Is(err, delta.ErrCorrupt) {
			c.entryProblem(p, e, block, "%v", err)
			return nil
		}
		return fmt.Errorf("read part %s: %s: %w", p.Name, e.Path, err)
	}
	rd, err := delta.NewReader(cr, name)
	if err != nil {
		return corrupt(err, nil)
	}
	h := rd.Header()
	if h.BlockSize != c.m.BlockSize || h.FileSize != e.Size || int64(len(h.Blocks)) != e.Blocks {
		c.entryProblem(p, e, nil, "the increment holds %d pages of %d bytes for a file of %d bytes, the manifest says %d pages of %d bytes for %d bytes",
			len(h.Blocks), h.BlockSize, h.FileSize, e.Blocks, c.m.BlockSize, e.Size)
		return nil
	}
	for i := 0; ; i++ {
		_, _, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var block *uint32
			if i < len(h.Blocks) {
				b := h.Blocks[i]
				block = &b
			}
			return corrupt(err, block)
		}
	}
	if _, err := io.CopyBuffer(io.Discard, cr, buf); err != nil {
		return fmt.Errorf("read part %s: %s: %w", p.Name, e.Path, err)
	}
	if cr.n != e.StoredSize {
		c.entryProblem(p, e, nil, "the increment is %d bytes, the manifest says %d", cr.n, e.StoredSize)
		return nil
	}
	if got := fmt.Sprintf("%08x", crc.Sum32()); got != e.CRC32C {
		c.entryProblem(p, e, nil, "increment crc32c %s, the manifest says %s", got, e.CRC32C)
	}
	return nil
}

func (c *linkCheck) addBytes(n int64) {
	c.mu.Lock()
	c.bytes += n
	c.mu.Unlock()
}

// sliceWriter appends to a byte slice.
type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
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

// authenticateLinks checks the manifest authenticator of every backup read
// when the repository is encrypted, recording a problem for each that
// does not match or is missing.
func authenticateLinks(ctx context.Context, st storage.Store, dec *repo.Decoder, checks []*linkCheck) error {
	links := make([]*Manifest, len(checks))
	for i, c := range checks {
		links[i] = c.m
	}
	encrypted, err := encryptedRepository(ctx, st, links)
	if err != nil {
		return fmt.Errorf("verify backups: %w", err)
	}
	if !encrypted {
		return nil
	}
	for _, c := range checks {
		err := CheckAuthenticator(ctx, st, dec, c.m.Name)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, repo.ErrNoIdentity):
			return fmt.Errorf("verify backup %s: %w", c.m.Name, err)
		case errors.Is(err, ErrNoAuthenticator):
			c.problem(Problem{Message: err.Error() + ": written by a walrus older than manifest authenticators, or removed; backup-fetch refuses it without --allow-unauthenticated"})
		case errors.Is(err, ErrManifestTampered):
			c.problem(Problem{Message: err.Error() + ": the manifest was changed after the backup was taken; do not restore it"})
		default:
			c.problem(Problem{Message: err.Error() + ": the authenticator could not be checked; check the repository and run backup-verify again"})
		}
	}
	return nil
}
