package basebackup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/walrusdb/walrus/internal/progress"
	"github.com/walrusdb/walrus/internal/wait"

	"github.com/jackc/pgx/v5"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// SupportedMajor is the PostgreSQL major version walrus backs up.
const SupportedMajor = 15

// Defaults of Options fields left zero.
const (
	DefaultPartSize    = 1 << 30
	DefaultConcurrency = 4
	// DefaultWALTimeout bounds the wait for the backup's WAL to appear in
	// the repository after pg_backup_stop said it was archived.
	DefaultWALTimeout = 5 * time.Minute
)

// cleanupTimeout bounds the best-effort removal of a failed backup's parts,
// which runs even when the backup's context was cancelled.
const cleanupTimeout = time.Minute

// archiverQueryTimeout bounds the query of pg_stat_archiver that explains
// a failed wait for the backup's WAL, also after ctx ended.
const archiverQueryTimeout = 10 * time.Second

// Options configure Push.
type Options struct {
	// Store is the repository; Encoder compresses and encrypts parts.
	Store   storage.Store
	Encoder *repo.Encoder
	// Decoder reads the timeline history files that decide whether a
	// backup on an older timeline can be a delta's base. nil reads only
	// plaintext ones; an encrypted history without an identity makes the
	// backup full.
	Decoder *repo.Decoder
	// Full takes a full backup whatever the repository holds.
	Full bool
	// DeltaFrom bases a delta on this backup (a name, or catalog.Latest
	// for the newest); DeltaMaxSteps does not apply. "" lets Push choose:
	// a delta on the newest backup while its chain holds fewer than
	// DeltaMaxSteps deltas.
	DeltaFrom string
	// DeltaMaxSteps is the longest chain of deltas above a full backup
	// that Push builds by itself; 0 or less means always full.
	DeltaMaxSteps int
	// IgnoreChecksumErrors stores pages that fail checksum verification
	// twice as read, with a warning, instead of failing the backup.
	IgnoreChecksumErrors bool
	// PGData is the data directory. Empty: the server's data_directory.
	// It must be the directory of the server DSN connects to.
	PGData string
	// DSN is a libpq connection string or URL; empty means the PG*
	// environment variables (see pg.ParseDSN).
	DSN string
	// PartSize is the plaintext size at which a part is cut (a file is
	// never split, so a part may exceed it by one file). 0: DefaultPartSize.
	PartSize int64
	// Concurrency is the number of parts produced and uploaded at once.
	// 0: DefaultConcurrency.
	Concurrency int
	// RateLimit caps reading the data directory, in bytes per second; 0
	// means no limit.
	RateLimit int64
	// SpreadCheckpoint makes pg_backup_start wait for a spread checkpoint
	// (less I/O at once, a slower start) instead of an immediate one.
	SpreadCheckpoint bool
	// WALTimeout bounds the wait for the backup's WAL in the repository.
	// 0: DefaultWALTimeout.
	WALTimeout time.Duration
	// SessionCheck is how often the backup's database session is checked
	// while the files are copied (pg.WatchSession); 0:
	// pg.DefaultSessionCheck.
	SessionCheck time.Duration
	// LockWait is how long to wait for a delete's exclusive repository
	// lock (repo.AcquireLock) before failing; 0 fails at once.
	LockWait time.Duration
	// Progress, when not nil, receives a redrawn status line (a terminal).
	Progress io.Writer
	// Logf, when not nil, receives a line for each phase.
	Logf func(format string, args ...any)
	// Infof, when not nil, receives what an operator should read even
	// without asking for details: why a full backup is taken instead of a
	// delta.
	Infof func(format string, args ...any)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Result describes a completed backup.
type Result struct {
	// Name is the backup's name.
	Name string
	// Kind is catalog.KindFull or catalog.KindDelta; DeltaFrom is a
	// delta's base and DeltaRoot the full backup at the root of its chain.
	Kind                 string
	DeltaFrom, DeltaRoot string
	// StartLSN, FinishLSN and Timeline are the backup's WAL range.
	StartLSN, FinishLSN pg.LSN
	Timeline            pg.TimelineID
	// DataSize and StoredSize are the bytes of files backed up and of
	// parts stored; DeltaSize, for a delta, the bytes of whole files and
	// increments it stores itself.
	DataSize, StoredSize, DeltaSize int64
	// Files and Parts count the files and the part objects.
	Files, Parts int
	// Duration is the wall time of the whole backup.
	Duration time.Duration
	// Warnings are things skipped that an operator may want to know about
	// (special files, dangling links), pages stored despite failing their
	// checksum (IgnoreChecksumErrors), pages with impossible LSNs.
	Warnings []string
}

// Push takes a full base backup of the running cluster into the
// repository. See the package documentation for the order of its steps
// and its guarantees.
func Push(ctx context.Context, opts Options) (res Result, err error) {
	if opts.Store == nil || opts.Encoder == nil {
		return Result{}, errors.New("backup-push: no repository")
	}
	if opts.Full && opts.DeltaFrom != "" {
		return Result{}, errors.New("backup-push: a full backup has no delta base: give either Full or DeltaFrom")
	}
	dec := opts.Decoder
	if dec == nil {
		dec = &repo.Decoder{}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	infof := opts.Infof
	if infof == nil {
		infof = logf
	}
	began := now()
	partSize := cmpOr(opts.PartSize, DefaultPartSize)
	concurrency := cmpOr(opts.Concurrency, DefaultConcurrency)
	walTimeout := cmpOr(opts.WALTimeout, DefaultWALTimeout)

	conn, err := pg.Connect(ctx, opts.DSN)
	if err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	// Closing the session ends a backup that was not stopped: PostgreSQL
	// aborts a non-exclusive backup whose session ends (TRAPS.md 9), and
	// releases the session's advisory lock.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		conn.Close(cctx)
	}()

	info, err := pg.ServerInfo(ctx, conn)
	if err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	if err := checkServer(ctx, conn, info); err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	pgdata, ctl, err := checkDataDir(opts.PGData, info)
	if err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	if _, err := repo.EnsureIdentity(ctx, opts.Store, info.SystemIdentifier, opts.Encoder.Encrypted()); err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	if err := lockCluster(ctx, conn); err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	// The repository's shared lock, from before the delta base is chosen
	// until the manifest is written: a delete (exclusive) can never remove
	// the base of this backup, or its parts as those of an unfinished
	// backup, while it runs. Losing the lock ends ctx.
	lock, err := repo.AcquireLock(ctx, opts.Store, repo.LockShared, "backup-push", repo.LockOptions{
		Wait:    opts.LockWait,
		Waiting: func(h repo.LockInfo) { infof("backup-push: waiting up to %s for %s", opts.LockWait, h) },
	})
	if err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	defer func() {
		if cause := context.Cause(lock.Context()); err != nil && errors.Is(cause, repo.ErrLockLost) {
			err = fmt.Errorf("%w (%v; nothing of this backup is listed: run backup-push again)", err, cause)
		}
		if rerr := lock.Release(ctx); rerr != nil {
			logf("backup-push: %v", rerr)
		}
	}()
	ctx = lock.Context()
	watchClient(ctx, conn)
	spcNames, err := pg.Tablespaces(ctx, conn)
	if err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}

	startTime := now().UTC()
	logf("backup-push: pg_backup_start (%s checkpoint)", map[bool]string{true: "spread", false: "immediate"}[opts.SpreadCheckpoint])
	startLSN, tli, err := pg.BackupStart(ctx, conn, "walrus "+startTime.Format(time.RFC3339), !opts.SpreadCheckpoint)
	if err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	segSize := info.WALSegSize
	startWAL := pg.SegmentName(tli, pg.SegmentForLSN(startLSN, segSize), segSize)
	name, err := chooseName(ctx, opts.Store, startTime, startWAL)
	if err != nil {
		return Result{}, fmt.Errorf("backup-push: %w", err)
	}
	// A failed backup gives its name back, unless parts of it remain: a
	// later backup-push of the same name would meet them.
	partsLeft := false
	defer func() {
		if err == nil || partsLeft {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := opts.Store.Delete(cctx, repo.ClaimKey(name)); derr != nil {
			logf("backup-push %s: remove %s: %v (delete removes it later)", name, repo.ClaimKey(name), derr)
		}
	}()
	logf("backup-push %s: started at %s on timeline %d", name, startLSN, tli)
	choice, err := chooseBase(ctx, opts.Store, dec, opts, clusterFacts{
		sysID:         info.SystemIdentifier,
		pgVersion:     info.VersionNum,
		dataChecksums: info.DataChecksums,
		blockSize:     int(ctl.BlockSize),
		timeline:      tli,
		startLSN:      startLSN,
		walSuffix:     opts.Encoder.Suffix(),
	})
	if err != nil {
		return Result{}, fmt.Errorf("backup-push %s: %w", name, err)
	}
	rs := readSettings{verify: info.DataChecksums, blockSize: int(ctl.BlockSize), relSegSize: ctl.RelSegSize, startLSN: startLSN}
	if choice.base != nil {
		rs.delta = &deltaBase{m: choice.base}
		infof("backup-push %s: a delta of %s (step %d of at most %d above the full backup %s): pages at or past %s", name, choice.base.Name, choice.steps, max(opts.DeltaMaxSteps, choice.steps), choice.root, choice.base.StartLSN)
	} else if choice.reason != "" {
		infof("backup-push %s: a full backup: %s", name, choice.reason)
	}

	prog := progress.New(opts.Progress, "backup "+name, "files")
	// A backup has few parts in flight, often fewer than the cores (a
	// relation segment of 1 GiB is one tar entry, so one part): each part
	// compresses several blocks at once. Same format, same object names.
	enc := *opts.Encoder
	enc.Codec = compress.WithConcurrency(enc.Codec, runtime.GOMAXPROCS(0))
	up := &uploader{st: opts.Store, enc: &enc, backup: name, partSize: partSize, limiter: newRateLimiter(opts.RateLimit), prog: prog, read: rs}
	keepParts := false
	stopped := false // pg_backup_stop succeeded
	defer func() {
		if err == nil {
			return
		}
		switch {
		case ctx.Err() != nil && stopped:
			err = fmt.Errorf("%w: interrupted while waiting for the backup's WAL in the repository; no backup was recorded: run backup-push again once archive_command archives into this repository", err)
		case ctx.Err() != nil:
			err = fmt.Errorf("%w: interrupted; no backup was recorded and the server's backup is aborted with its session: run backup-push again", err)
		}
		if keepParts {
			partsLeft = true
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		left, derr := up.removeStored(cctx)
		partsLeft = left || derr != nil
		if derr != nil {
			err = fmt.Errorf("%w (the parts already stored under %s could not be removed: %v; they are invisible without a manifest)", err, repo.PartsPrefix(name), derr)
		}
	}()
	stopProgress := prog.Run(ctx)
	defer stopProgress()

	// Nothing uses the session while the files are copied: a watch
	// checks that it lives, so that a backup made void by its loss fails
	// now, not after copying everything (TRAPS.md 9).
	copyCtx, stopWatch := pg.WatchSession(ctx, conn, opts.SessionCheck)
	cp, err := copyDataDir(copyCtx, up, pgdata, concurrency)
	stopWatch()
	if cause := context.Cause(copyCtx); err != nil && errors.Is(cause, pg.ErrSessionEnded) {
		return Result{}, fmt.Errorf("backup-push %s: %v during the copy (terminated, a server restart, or a lost connection), so PostgreSQL aborted this backup; no backup was recorded: run backup-push again", name, cause)
	}
	if err != nil {
		return Result{}, fmt.Errorf("backup-push %s: %w", name, err)
	}
	if cp.control.SystemIdentifier != info.SystemIdentifier {
		return Result{}, fmt.Errorf("backup-push %s: %s belongs to system %d, the server is %d", name, controlFilePath, cp.control.SystemIdentifier, info.SystemIdentifier)
	}
	var pageWarnings []string
	if err := up.found.checksumError(); err != nil {
		if !opts.IgnoreChecksumErrors {
			return Result{}, fmt.Errorf("backup-push %s: %w", name, err)
		}
		pageWarnings = up.found.checksumWarnings()
	}

	prog.SetPhase("pg_backup_stop")
	logf("backup-push %s: pg_backup_stop", name)
	// wait_for_archive => false: PostgreSQL's own wait has no bound and
	// hangs forever when archive_command fails. pg_backup_stop still
	// switches the segment; waitForWAL then checks the repository itself,
	// with a bound, and names the archiver's failure (TRAPS.md 14).
	stop, err := pg.BackupStop(ctx, conn, false)
	if err != nil {
		if ctx.Err() == nil && conn.IsClosed() {
			// A non-exclusive backup belongs to its session (TRAPS.md 9):
			// with the session gone PostgreSQL has aborted it, and
			// stopping it from another session is impossible.
			err = fmt.Errorf("%w: the backup's database session ended during the copy (terminated, a server restart, or a lost connection), so PostgreSQL aborted this backup; no backup was recorded: run backup-push again", err)
		}
		return Result{}, fmt.Errorf("backup-push %s: %w", name, err)
	}
	stopped = true
	finishWAL := pg.SegmentName(tli, pg.SegmentForLSN(max(stop.LSN, startLSN+1)-1, segSize), segSize)
	prog.SetPhase("checking the WAL in the repository")
	prog.SetPhase("waiting for the WAL in the repository")
	if err := waitForWAL(ctx, opts.Store, opts.Encoder.Suffix(), tli, startLSN, stop.LSN, segSize, walTimeout); err != nil {
		// Also when ctx ended the wait (command_timeout, a signal): the
		// archiver's failure is then the likely reason, and the operator's
		// only lead.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), archiverQueryTimeout)
		failure := pg.ArchiverFailure(actx, conn)
		cancel()
		return Result{}, fmt.Errorf("backup-push %s: %w%s", name, err, failure)
	}
	prog.SetPhase("")
	pageWarnings = append(pageWarnings, up.found.pastWarnings(stop.LSN)...)

	m := cp.manifest(name, up.parts, spcNames)
	setDelta(m, choice.base, int(ctl.BlockSize))
	m.SystemIdentifier = strconv.FormatUint(info.SystemIdentifier, 10)
	m.PGVersion = info.VersionNum
	m.Timeline = tli
	m.StartLSN, m.FinishLSN = startLSN, stop.LSN
	m.StartWALFile, m.FinishWALFile = startWAL, finishWAL
	m.StartTime, m.FinishTime = startTime, now().UTC()
	m.WALSegmentSize = segSize
	m.DataChecksums = info.DataChecksums
	m.Codec = opts.Encoder.Codec.Name()
	m.Encrypted = opts.Encoder.Encrypted()
	m.BackupLabel, m.TablespaceMap = stop.Label, stop.TablespaceMap
	// The lock kept deletes away; if it was lost (taken for stale and
	// removed), the base may be gone: never list a delta without it.
	if err := lock.Check(ctx); err != nil {
		return Result{}, fmt.Errorf("backup-push %s: %w", name, err)
	}
	if m.DeltaFrom != nil {
		if _, err := catalog.ReadManifest(ctx, opts.Store, *m.DeltaFrom); err != nil {
			return Result{}, fmt.Errorf("backup-push %s: the base backup is no longer readable: %w; run backup-push again", name, err)
		}
	}
	if opts.Encoder.Encrypted() {
		akey, err := catalog.WriteAuthenticator(ctx, opts.Store, opts.Encoder, m)
		if err != nil {
			return Result{}, fmt.Errorf("backup-push %s: %w", name, err)
		}
		up.mu.Lock()
		up.stored = append(up.stored, akey)
		up.mu.Unlock()
	}
	if err := catalog.WriteManifest(ctx, opts.Store, m); err != nil {
		// If the manifest was stored after all (a reply lost on the way
		// back), its parts must stay: never a listed but gutted backup.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		_, serr := opts.Store.Stat(cctx, repo.ManifestKey(name))
		cancel()
		keepParts = !errors.Is(serr, storage.ErrNotFound)
		return Result{}, fmt.Errorf("backup-push %s: %w", name, err)
	}
	stopProgress()
	res = Result{
		Name:       name,
		Kind:       m.Kind,
		StartLSN:   startLSN,
		FinishLSN:  stop.LSN,
		Timeline:   tli,
		DataSize:   m.DataSize,
		StoredSize: m.StoredSize,
		DeltaSize:  m.DeltaSize,
		Files:      countFiles(m.Files),
		Parts:      len(m.Parts),
		Duration:   now().Sub(began),
		Warnings:   append(append(cp.walked.warnings, up.warnings...), pageWarnings...),
	}
	if m.DeltaFrom != nil {
		res.DeltaFrom, res.DeltaRoot = *m.DeltaFrom, *m.DeltaRoot
	}
	return res, nil
}

func cmpOr[T int | int64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// copied is what copyDataDir stored.
type copied struct {
	walked  *walkResult
	jobs    []entry
	stored  []*catalog.File // by job; nil for directories, links and vanished files
	ctlFile *catalog.File
	control pg.ControlData
}

// copyDataDir walks pgdata and stores every file through up, pg_control
// last. It does not talk to PostgreSQL: Push brackets it with
// pg_backup_start and pg_backup_stop.
func copyDataDir(ctx context.Context, up *uploader, pgdata string, concurrency int) (*copied, error) {
	walked, err := walkDataDir(pgdata)
	if err != nil {
		return nil, err
	}
	up.prog.SetTotals(walked.bytes, walked.files)
	c := &copied{walked: walked}
	c.jobs = slices.DeleteFunc(slices.Clone(walked.entries), func(e entry) bool { return e.rel == controlFilePath })
	if c.stored, err = up.upload(ctx, c.jobs, concurrency); err != nil {
		return nil, err
	}
	// pg_control last, after every other file (TRAPS.md 12).
	data, fi, err := readControlFile(ctx, filepath.Join(pgdata, filepath.FromSlash(controlFilePath)))
	if err != nil {
		return nil, err
	}
	c.control, _ = pg.ParseControlFile(data)
	if c.ctlFile, err = up.addControlFile(ctx, data, fi.Mode(), fi.ModTime()); err != nil {
		return nil, err
	}
	return c, nil
}

// manifest assembles a full backup's manifest: its lists, ordered by path,
// and its sizes. The caller fills in the WAL range, times and server facts.
func (c *copied) manifest(name string, parts []catalog.Part, spcs []pg.Tablespace) *catalog.Manifest {
	m := &catalog.Manifest{}
	m.FormatVersion = catalog.FormatVersion
	m.Name = name
	m.Kind = catalog.KindFull
	files := make([]catalog.File, 0, len(c.jobs)+1)
	for i, e := range c.jobs {
		switch e.kind {
		case catalog.FileDir, catalog.FileSymlink:
			files = append(files, catalog.File{Path: e.rel, Kind: e.kind, Mode: catalog.Mode(e.mode), MTime: e.mtime.UTC(), Link: e.link})
		default:
			if c.stored[i] != nil {
				files = append(files, *c.stored[i])
			}
		}
	}
	files = append(files, *c.ctlFile)
	slices.SortFunc(files, func(a, b catalog.File) int { return strings.Compare(a.Path, b.Path) })
	m.Files = files
	for _, f := range files {
		m.DataSize += f.Size
	}
	m.Parts = slices.Clone(parts)
	slices.SortFunc(m.Parts, func(a, b catalog.Part) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range m.Parts {
		m.StoredSize += p.StoredSize
	}
	names := make(map[uint32]string, len(spcs))
	for _, s := range spcs {
		names[s.OID] = s.Name
	}
	for _, ts := range c.walked.tablespaces {
		ts.Name = names[ts.OID]
		m.Tablespaces = append(m.Tablespaces, ts)
	}
	slices.SortFunc(m.Tablespaces, func(a, b catalog.Tablespace) int { return int(int64(a.OID) - int64(b.OID)) })
	return m
}

// setDelta records the page size in m and, when base is not nil, makes m
// a delta of it: its base, its chain's root, and what it stores itself
// (its whole files and its increments).
func setDelta(m *catalog.Manifest, base *catalog.Manifest, blockSize int) {
	m.BlockSize = blockSize
	if base == nil {
		return
	}
	from, root := base.Name, base.Name
	if !base.IsFull() {
		root = *base.DeltaRoot
	}
	m.Kind = catalog.KindDelta
	m.DeltaFrom, m.DeltaRoot = &from, &root
	m.DeltaSize = 0
	for _, f := range m.Files {
		switch f.Kind {
		case catalog.FileWhole:
			m.DeltaSize += f.Size
		case catalog.FileIncrement:
			m.DeltaSize += f.StoredSize
		}
	}
}

func countFiles(fs []catalog.File) int {
	n := 0
	for _, f := range fs {
		if f.Kind != catalog.FileDir && f.Kind != catalog.FileSymlink {
			n++
		}
	}
	return n
}

// checkServer refuses servers walrus cannot back up correctly.
func checkServer(ctx context.Context, conn *pgx.Conn, info pg.Info) error {
	if major := info.VersionNum / 10000; major != SupportedMajor {
		return fmt.Errorf("the server runs PostgreSQL %d (server_version_num %d); this walrus backs up PostgreSQL %d only", major, info.VersionNum, SupportedMajor)
	}
	var mode string
	if err := conn.QueryRow(ctx, "SELECT current_setting('archive_mode')").Scan(&mode); err != nil {
		return fmt.Errorf("read archive_mode: %w", err)
	}
	switch {
	case mode == "off":
		return errors.New("archive_mode is off: a base backup is useless without the WAL from its start to its end; set archive_mode = on and archive_command = 'walrus wal-push %p' (with this repository), restart PostgreSQL, and retry")
	case info.InRecovery && mode != "always":
		return fmt.Errorf("the server is a standby with archive_mode = %s: a backup from a standby needs archive_mode = always so that its WAL reaches the repository", mode)
	}
	return nil
}

// checkDataDir returns the data directory to back up: opts' PGDATA, or the
// server's data_directory, and its pg_control, whose page size and segment
// size the backup reads relation files with. It must hold the server's
// pg_control, and where the server's data_directory is visible here it
// must be the same directory: backing up a copy would be silently wrong.
func checkDataDir(pgdata string, info pg.Info) (string, pg.ControlData, error) {
	if pgdata == "" {
		pgdata = info.DataDirectory
	}
	abs, err := filepath.Abs(pgdata)
	if err != nil {
		return "", pg.ControlData{}, fmt.Errorf("data directory %s: %w", pgdata, err)
	}
	ctl, err := pg.ReadControlFile(filepath.Join(abs, filepath.FromSlash(controlFilePath)))
	if err != nil {
		return "", pg.ControlData{}, fmt.Errorf("data directory %s: %w: give the data directory of the server walrus connects to (argument, pgdata or PGDATA)", abs, err)
	}
	if ctl.SystemIdentifier != info.SystemIdentifier {
		return "", pg.ControlData{}, fmt.Errorf("data directory %s belongs to system %d, but the server walrus connects to is system %d: check PGDATA and the connection settings", abs, ctl.SystemIdentifier, info.SystemIdentifier)
	}
	mine, err := os.Stat(abs)
	if err != nil {
		return "", pg.ControlData{}, fmt.Errorf("data directory %s: %w", abs, err)
	}
	if theirs, err := os.Stat(info.DataDirectory); err == nil && !os.SameFile(mine, theirs) {
		return "", pg.ControlData{}, fmt.Errorf("data directory %s is not the server's data directory %s (a copy of the same cluster?): back up %s", abs, info.DataDirectory, info.DataDirectory)
	}
	if !pg.ValidBlockSize(int(ctl.BlockSize)) || ctl.RelSegSize == 0 {
		return "", pg.ControlData{}, fmt.Errorf("data directory %s: pg_control records page size %d and segment size %d blocks, which walrus cannot read", abs, ctl.BlockSize, ctl.RelSegSize)
	}
	return abs, ctl, nil
}

// readControlFile reads pg_control whole and checks its CRC, retrying a
// torn read (TRAPS.md 12).
func readControlFile(ctx context.Context, path string) ([]byte, fs.FileInfo, error) {
	var lastErr error
	for attempt := range 10 {
		if attempt > 0 {
			if err := wait.Sleep(ctx, 50*time.Millisecond); err != nil {
				return nil, nil, err
			}
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", controlFilePath, err)
		}
		if fi.Size() > 1<<20 {
			return nil, nil, fmt.Errorf("read %s: %d bytes, not a control file", controlFilePath, fi.Size())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", controlFilePath, err)
		}
		if _, err := pg.ParseControlFile(b); err != nil {
			lastErr = err
			if errors.Is(err, pg.ErrControlCRC) {
				continue
			}
			return nil, nil, fmt.Errorf("read %s: %w", controlFilePath, err)
		}
		return b, fi, nil
	}
	return nil, nil, fmt.Errorf("read %s: %w (after 10 attempts, 50 ms apart): the cluster's control file fails its checksum every time; check it with pg_controldata before trusting this cluster, and take the backup again", controlFilePath, lastErr)
}

// nameTimeFormat is the time in a backup name: sortable, readable, UTC.
const nameTimeFormat = "20060102T150405Z"

// chooseName picks the backup's name, base_<start time>_<start segment>,
// with a _2, _3... suffix if something is already stored under that name
// (two backups that start in the same second and segment, or the leftover
// parts of a failed one), and claims it: repo.ClaimKey written
// create-only. Two backup-push runs that both see a name free (two
// clusters of one system identifier backing up in the same second) thus
// never share it: parts of identical bytes would otherwise be taken by the
// loser for its own, and removed with its failure from under the winner.
// Parts and the manifest are also create-only, so a name can never
// overwrite another backup (TRAPS.md 10).
func chooseName(ctx context.Context, st storage.Store, start time.Time, startWAL string) (string, error) {
	claim := newClaim(start)
	base := "base_" + start.UTC().Format(nameTimeFormat) + "_" + startWAL
	for i := 1; i <= 100; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s_%d", base, i)
		}
		used := false
		err := st.List(ctx, repo.BackupsPrefix+name+"/", func(storage.ObjectInfo) error {
			used = true
			return errStopList
		})
		if err != nil && !errors.Is(err, errStopList) {
			return "", fmt.Errorf("choose backup name: %w", err)
		}
		if !used {
			// Claimed create-only: another backup-push that saw the name
			// free too meets ErrExists and takes the next one.
			err := st.Put(ctx, repo.ClaimKey(name), bytes.NewReader(claim), storage.PutOptions{IfNotExists: true, Size: int64(len(claim))})
			if errors.Is(err, storage.ErrExists) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("claim backup name %s: %w", name, err)
			}
			return name, nil
		}
	}
	return "", fmt.Errorf("choose backup name: %s and 99 variants are all taken", base)
}

// newClaim returns the body of a backup name's claim: who claimed it, and
// a random token, so that no two claims are alike (a create-only Put
// whose answer was lost recognises its own claim, never another's).
func newClaim(start time.Time) []byte {
	host, _ := os.Hostname()
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	b, _ := json.Marshal(struct {
		Command string    `json:"command"`
		Host    string    `json:"host"`
		PID     int       `json:"pid"`
		Started time.Time `json:"started"`
		Token   string    `json:"token"`
	}{"backup-push", host, os.Getpid(), start.UTC(), hex.EncodeToString(token)})
	return append(b, '\n')
}

var errStopList = errors.New("stop listing")
