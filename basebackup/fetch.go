package basebackup

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/walrusdb/walrus/internal/progress"

	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// FetchOptions configure Fetch.
type FetchOptions struct {
	// Store is the repository; Decoder decrypts and decompresses parts.
	Store   storage.Store
	Decoder *repo.Decoder
	// Backup is a backup name or catalog.Latest.
	Backup string
	// AllowUnauthenticated restores backups of an encrypted repository
	// that have no manifest authenticator (catalog.ErrNoAuthenticator).
	// A manifest that does not match its authenticator is never restored.
	AllowUnauthenticated bool
	// Dest is the directory to restore into: absent or empty.
	Dest string
	// TablespaceMap maps a tablespace, given by its OID or its original
	// location, to a new directory (absent or empty). Unmapped tablespaces
	// are restored to their original locations, which must be absent or
	// empty.
	TablespaceMap map[string]string
	// Concurrency is the number of parts downloaded at once. 0:
	// DefaultConcurrency.
	Concurrency int
	// Recovery is what the restored cluster does at its first start.
	Recovery Recovery
	// Progress, when not nil, receives a redrawn status line (a terminal).
	Progress io.Writer
	// onSync, when not nil, is called right after each successful fsync of
	// the restore, with the kind of what was fsynced (syncedFile,
	// syncedAdded, syncedDir, syncedFinal) and its path, so that tests can
	// check what is fsynced and in which order. It is called from several
	// goroutines at once while the restored files are fsynced (syncFiles).
	onSync func(kind, path string)
}

// FetchResult describes a completed restore.
type FetchResult struct {
	// Name is the backup restored.
	Name string
	// Dest is the restored data directory, absolute.
	Dest string
	// Tablespaces maps each tablespace OID to the directory it was
	// restored to.
	Tablespaces map[uint32]string
	// Files and Bytes count the files and bytes written.
	Files int
	Bytes int64
	// Duration is the wall time of the restore.
	Duration time.Duration
	// DisabledSettings are the lines of the restored postgresql.auto.conf
	// that set recovery settings (from an earlier point-in-time restore of
	// the cluster) and that the restore commented out, since PostgreSQL
	// would combine them with the new ones (RecoverySettingNames).
	DisabledSettings []string
}

// ErrDestNotEmpty means a restore target holds something already.
var ErrDestNotEmpty = errors.New("restore target is not empty")

// maxHeldFileSize bounds the files a restore holds in memory to write
// last (pg_control, PG_VERSION).
const maxHeldFileSize = 1 << 20

// Fetch restores a backup into opts.Dest. It checks everything it can
// before it writes anything: the manifest, the targets (absent or empty),
// every part's presence and size. It then downloads the parts in parallel,
// verifies each file's size and CRC-32C and each part's SHA-256, fsyncs
// the files, writes and fsyncs backup_label, tablespace_map and the
// recovery settings, fsyncs the directories (deepest first, the parents of
// Dest and of the tablespace directories last), and writes
// recovery.signal, PG_VERSION and global/pg_control last (TRAPS.md 28),
// each fsynced with its directory, so that a restore that fails
// never leaves a directory PostgreSQL would start. It never writes outside
// Dest and the tablespace directories, whatever the manifest or a tar
// entry says.
func Fetch(ctx context.Context, opts FetchOptions) (res FetchResult, err error) {
	began := time.Now()
	if opts.Store == nil || opts.Decoder == nil {
		return FetchResult{}, errors.New("backup-fetch: no repository")
	}
	m, err := catalog.Resolve(ctx, opts.Store, opts.Backup)
	if err != nil {
		return FetchResult{}, fmt.Errorf("backup-fetch: %w", err)
	}
	links, err := catalog.ReadChain(ctx, opts.Store, m)
	if err != nil {
		return FetchResult{}, fmt.Errorf("backup-fetch %s: %w; nothing was written: restore another backup (walrus backup-list shows them)", m.Name, err)
	}
	chain, err := planChain(links)
	if err != nil {
		return FetchResult{}, fmt.Errorf("backup-fetch %s: %w; nothing was written: restore another backup (walrus backup-list shows them)", m.Name, err)
	}
	for _, l := range links {
		if l.Encrypted && opts.Decoder.Decryptor == nil {
			return FetchResult{}, fmt.Errorf("backup-fetch %s: backup %s: %w", m.Name, l.Name, repo.ErrNoIdentity)
		}
	}
	if _, err := catalog.AuthenticateChain(ctx, opts.Store, opts.Decoder, links, opts.AllowUnauthenticated); err != nil {
		hint := "check that the repository is reachable and the identity decrypts it, and run this again"
		switch {
		case errors.Is(err, catalog.ErrManifestTampered):
			hint = "do not restore it: its manifest was changed after the backup was taken; restore another backup (walrus backup-list shows them)"
		case errors.Is(err, catalog.ErrNoAuthenticator):
			hint = "it was written by a walrus older than manifest authenticators, or its authenticator was removed; if you trust the repository, restore it with --allow-unauthenticated"
		}
		return FetchResult{}, fmt.Errorf("backup-fetch %s: %w; nothing was written: %s", m.Name, err, hint)
	}
	if err := opts.Recovery.Target.Validate(&m.Backup); err != nil {
		return FetchResult{}, fmt.Errorf("backup-fetch %s: %w", m.Name, err)
	}
	if _, err := opts.Recovery.settings(); err != nil {
		return FetchResult{}, fmt.Errorf("backup-fetch %s: %w", m.Name, err)
	}
	pl, err := planRestore(m, opts.Dest, opts.TablespaceMap)
	if err != nil {
		return FetchResult{}, fmt.Errorf("backup-fetch %s: %w", m.Name, err)
	}
	pl.onSync = opts.onSync
	concurrency := cmpOr(opts.Concurrency, DefaultConcurrency)
	for li, l := range links {
		if err := checkParts(ctx, opts.Store, l, concurrency); err != nil {
			return FetchResult{}, fmt.Errorf("backup-fetch %s: %w", m.Name, errChainLink(links, li, err))
		}
	}

	// From here on we write.
	defer func() {
		if err != nil {
			pl.undo()
			where := pl.dest
			for _, d := range pl.spcDirs() {
				where += ", " + d
			}
			err = fmt.Errorf("backup-fetch %s: restore failed: %s is incomplete (it will not start); remove it and retry: %w", m.Name, where, err)
		}
	}()
	prog := progress.New(opts.Progress, "restore "+m.Name, "files")
	prog.SetTotals(m.DataSize, int64(countFiles(m.Files)))
	stopProgress := prog.Run(ctx)
	defer stopProgress()
	if err := pl.makeTree(); err != nil {
		return FetchResult{}, err
	}
	w := &restorer{pl: pl, m: m, links: links, chain: chain, st: opts.Store, dec: opts.Decoder, prog: prog, held: map[string][]byte{}}
	if err := w.restoreChain(ctx, concurrency); err != nil {
		return FetchResult{}, err
	}
	disabled, err := pl.writeRecoveryFiles(opts.Recovery)
	if err != nil {
		return FetchResult{}, err
	}
	if err := pl.finishDirs(); err != nil {
		return FetchResult{}, err
	}
	// Last: what makes the directory a data directory PostgreSQL starts.
	if err := pl.writeFinal(pl.abs("recovery.signal"), nil, 0o600, time.Time{}); err != nil {
		return FetchResult{}, err
	}
	for _, p := range []string{versionFilePath, controlFilePath} {
		f := w.fileEntry(p)
		if err := pl.writeFinal(pl.abs(p), w.held[p], fs.FileMode(f.Mode), f.MTime); err != nil {
			return FetchResult{}, err
		}
	}
	stopProgress()
	return FetchResult{Name: m.Name, Dest: pl.dest, Tablespaces: pl.spcTarget, Files: int(prog.Units()), Bytes: prog.Bytes(), Duration: time.Since(began), DisabledSettings: disabled}, nil
}

// checkParts makes sure every part the manifest lists is stored, with the
// size the manifest records, before anything is written (TRAPS.md 11).
func checkParts(ctx context.Context, st storage.Store, m *catalog.Manifest, concurrency int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, p := range m.Parts {
		g.Go(func() error {
			info, err := st.Stat(gctx, p.Key)
			if errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("the backup is damaged: part %s (%s) is missing from the repository; restore another backup", p.Name, p.Key)
			}
			if err != nil {
				return fmt.Errorf("check part %s: %w", p.Name, err)
			}
			if info.Size != p.StoredSize {
				return fmt.Errorf("the backup is damaged: part %s (%s) is %d bytes, the manifest says %d; restore another backup", p.Name, p.Key, info.Size, p.StoredSize)
			}
			return nil
		})
	}
	return g.Wait()
}

// plan is where every manifest path goes.
type plan struct {
	m         *catalog.Manifest
	dest      string
	spcTarget map[uint32]string // tablespace OID → directory its contents go to
	dirs      []catalog.File
	onSync    func(kind, path string) // FetchOptions.onSync
}

// The kinds of fsync that fsync reports to FetchOptions.onSync.
const (
	syncedFile  = "file"  // a file restored from the backup (syncFiles)
	syncedAdded = "added" // backup_label, tablespace_map, walrus-restore.yaml, postgresql.auto.conf (writeRecoveryFiles)
	syncedDir   = "dir"   // a directory
	syncedFinal = "final" // recovery.signal, PG_VERSION, global/pg_control (writeFinal)
)

// fsync fsyncs f, opened at path p, and reports it to the onSync hook:
// every fsync of a restore goes through it, so that a test sees one
// removed.
func (pl *plan) fsync(f *os.File, kind, p string) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if pl.onSync != nil {
		pl.onSync(kind, p)
	}
	return nil
}

// planRestore resolves the targets and checks that each is absent or
// empty, and that none lies inside another. Nothing is written.
func planRestore(m *catalog.Manifest, dest string, spcMap map[string]string) (*plan, error) {
	if dest == "" {
		return nil, errors.New("no destination directory")
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", dest, err)
	}
	pl := &plan{m: m, dest: abs, spcTarget: map[uint32]string{}}
	used := map[string]bool{}
	norm := map[string]string{}
	for k, v := range spcMap {
		if filepath.IsAbs(k) {
			k = filepath.Clean(k)
		}
		used[k] = false
		norm[k] = v
	}
	spcMap = norm
	for _, ts := range m.Tablespaces {
		target := ts.Location
		for _, key := range []string{strconv.FormatUint(uint64(ts.OID), 10), filepath.Clean(ts.Location)} {
			if nw, ok := spcMap[key]; ok {
				target, used[key] = nw, true
			}
		}
		if !filepath.IsAbs(target) {
			return nil, fmt.Errorf("tablespace %d (%s): new location %q is not an absolute path", ts.OID, ts.Name, target)
		}
		pl.spcTarget[ts.OID] = filepath.Clean(target)
	}
	for k, ok := range used {
		if !ok {
			return nil, fmt.Errorf("--tablespace-map %s: the backup has no tablespace with that OID or location (it has: %s)", k, describeTablespaces(m.Tablespaces))
		}
	}
	targets := []string{pl.dest}
	for _, oid := range slices.Sorted(maps.Keys(pl.spcTarget)) {
		targets = append(targets, pl.spcTarget[oid])
	}
	for i, a := range targets {
		for j, b := range targets {
			if i != j && (a == b || strings.HasPrefix(b, a+string(filepath.Separator))) {
				return nil, fmt.Errorf("restore targets %s and %s overlap: map each tablespace to its own directory outside the data directory (--tablespace-map OID=DIR)", a, b)
			}
		}
	}
	for i, t := range targets {
		if err := checkEmpty(t); err != nil {
			if i > 0 && errors.Is(err, ErrDestNotEmpty) {
				return nil, fmt.Errorf("%w (a tablespace's location; restore it elsewhere with --tablespace-map OID=NEWDIR)", err)
			}
			return nil, err
		}
	}
	for _, f := range m.Files {
		if f.Kind == catalog.FileDir {
			pl.dirs = append(pl.dirs, f)
		}
	}
	return pl, nil
}

func describeTablespaces(ts []catalog.Tablespace) string {
	if len(ts) == 0 {
		return "none"
	}
	var s []string
	for _, t := range ts {
		s = append(s, fmt.Sprintf("%d %s at %s", t.OID, t.Name, t.Location))
	}
	return strings.Join(s, "; ")
}

// checkEmpty accepts an absent path or an empty directory.
func checkEmpty(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s exists and is not a directory: give a new or empty directory", ErrDestNotEmpty, dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: %s holds %s; nothing was changed: give a new or empty directory", ErrDestNotEmpty, dir, names[0])
	}
	return nil
}

// spcDirs lists the tablespace directories.
func (pl *plan) spcDirs() []string {
	var out []string
	for _, oid := range slices.Sorted(maps.Keys(pl.spcTarget)) {
		out = append(out, pl.spcTarget[oid])
	}
	return out
}

// abs returns where the manifest path rel is written: under Dest, or for
// pg_tblspc/<oid>/... under the tablespace's directory (never through the
// link). It refuses anything that is not a clean relative path.
func (pl *plan) abs(rel string) string {
	if rest, ok := strings.CutPrefix(rel, "pg_tblspc/"); ok {
		if oidText, inner, ok := strings.Cut(rest, "/"); ok {
			if oid, err := strconv.ParseUint(oidText, 10, 32); err == nil {
				if dir, ok := pl.spcTarget[uint32(oid)]; ok {
					return filepath.Join(dir, filepath.FromSlash(inner))
				}
			}
		}
	}
	return filepath.Join(pl.dest, filepath.FromSlash(rel))
}

// target is abs for a path read from a manifest or a tar entry, checked
// again here whatever validation came before.
func (pl *plan) target(rel string) (string, error) {
	if err := catalog.ValidatePath(rel); err != nil {
		return "", fmt.Errorf("refusing to restore %q: %w", rel, err)
	}
	p := pl.abs(rel)
	for _, root := range append([]string{pl.dest}, pl.spcDirs()...) {
		if strings.HasPrefix(p, root+string(filepath.Separator)) {
			return p, nil
		}
	}
	return "", fmt.Errorf("refusing to restore %q: it resolves outside the restore targets", rel)
}

// makeTree creates Dest, the tablespace directories, every directory of
// the manifest (mode 0700 for now; finishDirs sets the recorded modes) and
// the tablespace links.
func (pl *plan) makeTree() error {
	if err := os.MkdirAll(pl.dest, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", pl.dest, err)
	}
	// PostgreSQL refuses a data directory readable by others.
	if err := os.Chmod(pl.dest, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", pl.dest, err)
	}
	for _, d := range pl.spcDirs() {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create tablespace directory %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("create tablespace directory %s: %w", d, err)
		}
	}
	for _, d := range pl.dirs {
		p, err := pl.target(d.Path)
		if err != nil {
			return err
		}
		if err := os.Mkdir(p, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", p, err)
		}
	}
	for oid, dir := range pl.spcTarget {
		link := filepath.Join(pl.dest, "pg_tblspc", strconv.FormatUint(uint64(oid), 10))
		if err := os.Symlink(dir, link); err != nil {
			return fmt.Errorf("create tablespace link %s: %w", link, err)
		}
	}
	return nil
}

// finishDirs sets every directory's recorded mode and fsyncs the
// directories, deepest first, then the parents of Dest and of the
// tablespace directories (which the restore may have created), so that
// every file written is reachable after a crash.
func (pl *plan) finishDirs() error {
	dirs := slices.Clone(pl.dirs)
	slices.SortFunc(dirs, func(a, b catalog.File) int { return strings.Compare(b.Path, a.Path) })
	for _, d := range dirs {
		p, err := pl.target(d.Path)
		if err != nil {
			return err
		}
		// Keep the owner's rwx so that we (and PostgreSQL) can use it.
		if err := os.Chmod(p, fs.FileMode(d.Mode)|0o700); err != nil {
			return fmt.Errorf("set mode of %s: %w", p, err)
		}
		if err := pl.syncDir(p); err != nil {
			return err
		}
	}
	for _, d := range append(pl.spcDirs(), filepath.Join(pl.dest, "pg_tblspc"), pl.dest) {
		if err := pl.syncDir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	parents := []string{filepath.Dir(pl.dest)}
	for _, d := range pl.spcDirs() {
		if p := filepath.Dir(d); !slices.Contains(parents, p) {
			parents = append(parents, p)
		}
	}
	for _, p := range parents {
		// A parent we may not read (only search) cannot be fsynced by
		// us; its entry for a directory we did not create is old.
		if err := pl.syncDir(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			return err
		}
	}
	return nil
}

// syncDir fsyncs the directory p, making its entries durable.
func (pl *plan) syncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", p, err)
	}
	defer d.Close()
	// EINVAL: a file system that cannot fsync directories (as PostgreSQL,
	// walrus takes it as done).
	if err := pl.fsync(d, syncedDir, p); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("sync directory %s: %w", p, err)
	}
	return nil
}

// writeRecoveryFiles writes backup_label, tablespace_map (with the
// restored locations), the walrus-restore.yaml for restore_command and
// the recovery settings appended to postgresql.auto.conf, each fsynced.
// The recovery settings the restored postgresql.auto.conf held already
// are commented out; it returns their lines.
func (pl *plan) writeRecoveryFiles(r Recovery) (disabled []string, err error) {
	m := pl.m
	if err := pl.writeSynced(syncedAdded, pl.abs("backup_label"), []byte(m.BackupLabel), 0o600, time.Time{}); err != nil {
		return nil, err
	}
	if len(m.Tablespaces) > 0 || m.TablespaceMap != "" {
		var b strings.Builder
		for _, ts := range m.Tablespaces {
			fmt.Fprintf(&b, "%d %s\n", ts.OID, escapeMapPath(pl.spcTarget[ts.OID]))
		}
		if err := pl.writeSynced(syncedAdded, pl.abs("tablespace_map"), []byte(b.String()), 0o600, time.Time{}); err != nil {
			return nil, err
		}
	}
	if r.ConfigFile != nil {
		if err := pl.writeSynced(syncedAdded, pl.abs(pg.RestoreConfigFile), r.ConfigFile, 0o600, time.Time{}); err != nil {
			return nil, err
		}
	}
	lines, err := r.settings()
	if err != nil {
		return nil, err
	}
	auto := pl.abs("postgresql.auto.conf")
	// The restored file, read and rewritten in place: the directory is
	// not startable before pg_control is written, after this.
	old, err := readNoFollow(auto)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", auto, err)
	}
	kept, disabled := disableRecoverySettings(old)
	f, err := os.OpenFile(auto, os.O_WRONLY|os.O_TRUNC|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write recovery settings: %w", err)
	}
	_, err = f.Write(append(kept, "\n"+strings.Join(lines, "\n")+"\n"...))
	if err == nil {
		err = pl.fsync(f, syncedAdded, auto)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write recovery settings to %s: %w", auto, err)
	}
	return disabled, nil
}

// RecoverySettingNames are the settings that choose how a recovery
// fetches WAL and where it stops. backup-fetch writes its own and
// comments out those a restored postgresql.auto.conf holds: a cluster
// that was itself restored to a point in time keeps its recovery_target_*
// there, and PostgreSQL would refuse to start ("multiple recovery targets
// specified") or follow the old target or timeline.
var RecoverySettingNames = []string{
	"restore_command", "recovery_target", "recovery_target_name", "recovery_target_time",
	"recovery_target_xid", "recovery_target_lsn", "recovery_target_inclusive",
	"recovery_target_timeline", "recovery_target_action",
}

// disabledPrefix starts a line of postgresql.auto.conf that backup-fetch
// commented out.
const disabledPrefix = "# disabled by walrus backup-fetch: "

// disableRecoverySettings returns conf with every line that sets one of
// RecoverySettingNames commented out, and those lines.
func disableRecoverySettings(conf []byte) (out []byte, disabled []string) {
	if len(conf) == 0 {
		return nil, nil
	}
	lines := strings.SplitAfter(string(conf), "\n")
	var b strings.Builder
	for _, line := range lines {
		if name, _, ok := pg.ParseConfLine(strings.TrimRight(line, "\r\n")); ok && slices.Contains(RecoverySettingNames, name) {
			disabled = append(disabled, strings.TrimRight(line, "\r\n"))
			b.WriteString(disabledPrefix)
		}
		b.WriteString(line)
	}
	return []byte(b.String()), disabled
}

// readNoFollow reads the file p, refusing a symbolic link.
func readNoFollow(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// escapeMapPath escapes a location as PostgreSQL writes it in
// tablespace_map: a backslash before each backslash, newline and carriage
// return.
func escapeMapPath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r == '\\' || r == '\n' || r == '\r' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// writeSynced creates a new file (never through a symbolic link, never
// over an existing file), writes data, sets its mode and, unless mtime is
// zero, its time, and fsyncs it (reported as kind).
func (pl *plan) writeSynced(kind, p string, data []byte, mode fs.FileMode, mtime time.Time) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode.Perm() | 0o600)
	}
	if err == nil && !mtime.IsZero() {
		// Before the fsync, which makes the time durable with the data.
		err = os.Chtimes(p, mtime, mtime)
	}
	if err == nil {
		err = pl.fsync(f, kind, p)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// writeFinal writes one of the files that make the directory startable
// (writeSynced), and fsyncs its directory.
func (pl *plan) writeFinal(p string, data []byte, mode fs.FileMode, mtime time.Time) error {
	if err := pl.writeSynced(syncedFinal, p, data, mode, mtime); err != nil {
		return err
	}
	return pl.syncDir(filepath.Dir(p))
}

// undo removes, after a failure, the files that would let PostgreSQL
// start the incomplete directory: pg_control, PG_VERSION, recovery.signal
// and backup_label. The rest stays for inspection; the error says to
// remove it.
func (pl *plan) undo() {
	for _, rel := range []string{controlFilePath, versionFilePath, "recovery.signal", "backup_label"} {
		_ = os.Remove(pl.abs(rel))
	}
	_ = pl.syncDir(filepath.Join(pl.dest, "global"))
	_ = pl.syncDir(pl.dest)
}

// restorer downloads parts and writes their files.
type restorer struct {
	pl    *plan
	m     *catalog.Manifest   // the backup restored, links[0]
	links []*catalog.Manifest // its chain, newest first
	chain *chainPlan
	st    storage.Store
	dec   *repo.Decoder
	prog  *progress.Line

	mu     sync.Mutex
	held   map[string][]byte // files written last, by path
	toSync []string          // files written, to fsync at the end (syncFiles)
}

// fileEntry returns the manifest entry of path.
func (w *restorer) fileEntry(path string) catalog.File {
	i, _ := slices.BinarySearchFunc(w.m.Files, path, func(f catalog.File, p string) int { return strings.Compare(f.Path, p) })
	return w.m.Files[i]
}

// restoreChain streams the parts of each link of the chain, newest first,
// concurrency parts at once: every part of the backup restored, and the
// parts of older links that hold a copy still needed.
func (w *restorer) restoreChain(ctx context.Context, concurrency int) error {
	for li, l := range w.links {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(concurrency)
		for _, p := range l.Parts {
			if li > 0 && len(w.chain.needs[li][p.Name]) == 0 {
				continue
			}
			g.Go(func() error { return errChainLink(w.links, li, w.restorePart(gctx, li, p)) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	if err := w.chain.checkComplete(); err != nil {
		return err
	}
	if err := w.syncFiles(ctx); err != nil {
		return err
	}
	for _, p := range []string{controlFilePath, versionFilePath} {
		if _, ok := w.held[p]; !ok {
			return fmt.Errorf("the backup holds no %s", p)
		}
	}
	return nil
}

// restorePart streams one part of link li of the chain with
// catalog.ReadPart: decrypt, decompress, untar; every tar entry must be a
// regular file or increment that the link's manifest places in this part;
// every such entry must appear; the part's plaintext must match its
// recorded size and SHA-256. The entries the restore needs are written
// (checked against their size and CRC-32C), the others skipped.
//
// The files are written by the part's writeBehind, on a goroutine of its
// own, while the part is decoded; a failure of either ends both.
func (w *restorer) restorePart(ctx context.Context, li int, part catalog.Part) error {
	needed := w.chain.needs[li][part.Name]
	wb := newWriteBehind()
	err := catalog.ReadPart(ctx, w.st, w.dec, part, w.chain.stored[li][part.Name], func(e *catalog.File, r io.Reader) error {
		fr := needed[e.Path]
		if fr == nil {
			return nil // a copy that a newer backup replaces
		}
		return w.applySource(ctx, li, part, fr, e, r, wb)
	})
	if werr := wb.close(); werr != nil && (err == nil || errors.Is(err, errWriterFailed)) {
		return fmt.Errorf("part %s: %w", part.Name, werr)
	}
	return err
}

// writeFile writes one file through wb (or, for pg_control and
// PG_VERSION, holds it to write last) and checks its size and CRC-32C.
// The file is complete (mode, time, closed) once wb ran its last step.
func (w *restorer) writeFile(ctx context.Context, part catalog.Part, f *catalog.File, r io.Reader, wb *writeBehind) error {
	crc := crc32.New(castagnoli)
	if f.Path == controlFilePath || f.Path == versionFilePath {
		if f.Size > maxHeldFileSize {
			return fmt.Errorf("part %s: %s is %d bytes: not a real %s", part.Name, f.Path, f.Size, f.Path)
		}
		b, err := io.ReadAll(io.TeeReader(r, crc))
		if err != nil {
			return fmt.Errorf("read part %s: %s: %w", part.Name, f.Path, err)
		}
		if err := checkFile(f, int64(len(b)), crc.Sum32()); err != nil {
			return fmt.Errorf("part %s: %w", part.Name, err)
		}
		if f.Path == controlFilePath {
			ctl, err := pg.ParseControlFile(b)
			if err != nil {
				return fmt.Errorf("part %s: %w", part.Name, err)
			}
			if strconv.FormatUint(ctl.SystemIdentifier, 10) != w.m.SystemIdentifier {
				return fmt.Errorf("part %s: pg_control is of system %d, the manifest says %s", part.Name, ctl.SystemIdentifier, w.m.SystemIdentifier)
			}
		}
		w.mu.Lock()
		w.held[f.Path] = b
		w.mu.Unlock()
		w.prog.AddBytes(int64(len(b)))
		w.prog.AddUnits(1)
		return nil
	}
	p, err := w.pl.target(f.Path)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("restore %s: %w", f.Path, err)
	}
	// Written in order, so only its end is ever padded for direct I/O.
	var file *wbFile
	if f.Size >= directMinSize {
		preallocate(out, f.Size)
		file = newWBFile(out, true)
	} else {
		file = newWBFile(out, false)
	}
	n, err := w.copyBehind(ctx, wb, file, r, crc)
	if err == nil {
		err = checkFile(f, n, crc.Sum32())
	}
	if err != nil {
		wb.finish(file, func(error) error { return out.Close() })
		if errors.Is(err, errWriterFailed) {
			return err
		}
		return fmt.Errorf("part %s: %w", part.Name, err)
	}
	mode, mtime := fs.FileMode(f.Mode)|0o600, f.MTime
	wb.finish(file, func(werr error) error {
		if werr != nil {
			out.Close()
			return nil // already reported
		}
		err := file.truncate()
		if err == nil {
			err = out.Chmod(mode)
		}
		if err == nil {
			file.startRemaining()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			if err = os.Chtimes(p, mtime, mtime); err != nil {
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

// copyBehind reads r to its end into wb's buffers, adding every byte to
// crc, and queues them to be written to file from offset 0. It returns
// the bytes read; errWriterFailed (wrapped) when the writer failed.
func (w *restorer) copyBehind(ctx context.Context, wb *writeBehind, file *wbFile, r io.Reader, crc hash.Hash32) (int64, error) {
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		buf, err := wb.buffer(ctx)
		if err != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("%w: %w", errWriterFailed, err)
			}
			return n, err
		}
		k, rerr := fill(r, buf)
		if k > 0 {
			crc.Write(buf[:k])
			wb.write(file, n, buf[:k])
			n += int64(k)
			w.prog.AddBytes(int64(k))
		} else {
			wb.pool <- buf
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// fill reads from r until buf is full or r fails; io.EOF (only) means r
// ended, whatever was read before it.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writebackEvery is how many bytes a restore writes to a file before it
// asks the kernel to start writing them to disk (startWriteback).
const writebackEvery = 8 << 20

// written records a restored file, to be fsynced by syncFiles.
func (w *restorer) written(p string) {
	w.mu.Lock()
	w.toSync = append(w.toSync, p)
	w.mu.Unlock()
}

// syncFilesConcurrency bounds the fsyncs in flight at the end of a
// restore: the file system commits concurrent fsyncs together.
const syncFilesConcurrency = 16

// syncFiles fsyncs every file the restore wrote, once each, after they
// are all written: the kernel has been writing them back meanwhile
// (startWriteback), and a file's fsync no longer holds up the download
// and decompression of the next. Directories are fsynced after this
// (finishDirs), and the files that make the directory startable last.
func (w *restorer) syncFiles(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(syncFilesConcurrency)
	for _, p := range w.toSync {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return fmt.Errorf("sync %s: %w", p, err)
			}
			err = w.pl.fsync(f, syncedFile, p)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("sync %s: %w", p, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// checkFile compares what was restored with the manifest.
func checkFile(f *catalog.File, n int64, sum uint32) error {
	if n != f.Size {
		return fmt.Errorf("restore %s: %d bytes, the manifest says %d: %w", f.Path, n, f.Size, repo.ErrChecksum)
	}
	if got := crcString(sum); got != f.CRC32C {
		return fmt.Errorf("restore %s: crc32c %s, the manifest says %s: %w", f.Path, got, f.CRC32C, repo.ErrChecksum)
	}
	return nil
}
