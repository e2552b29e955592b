package setup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/crypto"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
)

// Status is the outcome of one check.
type Status int

// Outcomes of a check.
const (
	// StatusOK: as it should be.
	StatusOK Status = iota
	// StatusWarn: works, but worth a look.
	StatusWarn
	// StatusFail: archiving does not work, or not into this repository.
	StatusFail
	// StatusSkip: not checked, because an earlier check failed.
	StatusSkip
)

// String is the label printed before a finding.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusWarn:
		return "WARN"
	case StatusFail:
		return "FAIL"
	case StatusSkip:
		return "skip"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Check steps, in the order Check runs them. Each failure names its step.
const (
	StepConfig         = "configuration"
	StepEncryption     = "encryption"
	StepRepository     = "repository"
	StepLocks          = "locks"
	StepServer         = "server"
	StepArchiveMode    = "archive_mode"
	StepWALLevel       = "wal_level"
	StepArchiveCommand = "archive_command"
	StepArchiver       = "archiver"
	StepWALSwitch      = "WAL switch"
)

// Finding is the outcome of one check.
type Finding struct {
	// Step names what was checked (one of the Step constants).
	Step string
	// Status is the outcome.
	Status Status
	// Message says what was found.
	Message string
	// Fix says what to do about a warning or a failure.
	Fix string
}

// CheckOptions configure Check.
type CheckOptions struct {
	// ConfigPath is the --config flag ("" means WALRUS_CONFIG, then the
	// environment alone).
	ConfigPath string
	// Lookup reads the environment (os.LookupEnv when nil).
	Lookup config.LookupFunc
	// Binary is this walrus binary, absolute, for comparing with
	// archive_command ("" to skip that comparison).
	Binary string
	// Timeout bounds the repository probe and the wait for the switched
	// WAL segment to arrive.
	Timeout time.Duration
	// Report, when set, is called with each finding as soon as it is
	// made, on the calling goroutine.
	Report func(Finding)
}

// CheckResult is every finding of a Check.
type CheckResult struct {
	Findings []Finding
}

// Failures counts the failed checks.
func (r *CheckResult) Failures() int { return r.count(StatusFail) }

// Warnings counts the warnings.
func (r *CheckResult) Warnings() int { return r.count(StatusWarn) }

func (r *CheckResult) count(s Status) int {
	n := 0
	for _, f := range r.Findings {
		if f.Status == s {
			n++
		}
	}
	return n
}

// ProbePrefix is the key prefix of the objects Check writes to prove that
// the repository is writable. It is outside wal/, backups/ and
// restore-points/, so a probe is never taken for WAL or a backup.
const ProbePrefix = "check/"

// checker is the state of one Check.
type checker struct {
	o   CheckOptions
	res *CheckResult
	cfg *config.Config
	r   *repo.Repo
	id  *repo.Identity
}

func (c *checker) add(step string, s Status, fix, format string, args ...any) {
	f := Finding{Step: step, Status: s, Message: fmt.Sprintf(format, args...), Fix: fix}
	c.res.Findings = append(c.res.Findings, f)
	if c.o.Report != nil {
		c.o.Report(f)
	}
}

func (c *checker) failed() bool { return c.res.Failures() > 0 }

// Check verifies end to end that archiving works: the configuration
// loads; the identity file (if any) decrypts what the recipients encrypt;
// the repository is reachable and writable (an object is put under
// ProbePrefix, read back and deleted); the server's settings send WAL
// there (archive_mode, wal_level, archive_command running walrus wal-push
// with a configuration of the same repository); then, when nothing has
// failed so far, it forces a WAL switch and waits, at most o.Timeout,
// until the completed segment is in the repository. Every failure comes
// with its fix. Check never changes any setting.
func Check(ctx context.Context, o CheckOptions) *CheckResult {
	if o.Lookup == nil {
		o.Lookup = os.LookupEnv
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	c := &checker{o: o, res: &CheckResult{}}
	if !c.loadConfig() {
		return c.res
	}
	c.checkEncryption()
	if c.openRepo(ctx) {
		defer c.r.Close()
		c.probeRepo(ctx)
		c.checkLocks(ctx)
	}
	conn := c.connect(ctx)
	if conn == nil {
		c.add(StepWALSwitch, StatusSkip, "", "not tried: walrus cannot reach the server")
		return c.res
	}
	defer conn.Close(context.WithoutCancel(ctx))
	inRecovery := c.checkServer(ctx, conn)
	c.checkSettings(ctx, conn)
	c.checkArchiver(ctx, conn)
	switch {
	case inRecovery:
		c.add(StepWALSwitch, StatusSkip, "", "not tried: the server is in recovery (a standby), where pg_switch_wal is not allowed")
	case c.failed():
		c.add(StepWALSwitch, StatusSkip, "", "not tried: fix the failures above first")
	default:
		c.switchAndWait(ctx, conn)
	}
	return c.res
}

func (c *checker) loadConfig() bool {
	cfg, err := config.Load(c.o.ConfigPath, c.o.Lookup)
	if err != nil {
		c.add(StepConfig, StatusFail, "fix the key the message names (walrus config show prints the effective settings), or write a configuration with walrus setup --pgdata DIR", "%v", err)
		return false
	}
	if cfg.Source != "" {
		if abs, err := filepath.Abs(cfg.Source); err == nil {
			cfg.Source = abs
		}
		c.add(StepConfig, StatusOK, "", "%s loads (WALRUS_* environment variables applied)", cfg.Source)
	} else {
		c.add(StepConfig, StatusWarn, "pass --config FILE, the file archive_command uses", "no configuration file: settings come from WALRUS_* environment variables only, which archive_command does not see")
	}
	for _, w := range cfg.Warnings {
		c.add(StepConfig, StatusWarn, "restrict the file to its owner", "%s", w)
	}
	c.cfg = cfg
	return true
}

func (c *checker) checkEncryption() {
	e := c.cfg.Encryption
	if !e.Enabled() {
		c.add(StepEncryption, StatusOK, "", "not encrypted (no encryption settings)")
		return
	}
	var idRecipients []string
	if e.IdentityFile != "" {
		d, err := crypto.LoadIdentityFile(e.IdentityFile)
		if err != nil {
			c.add(StepEncryption, StatusFail, "point encryption.identity_file at the key walrus keygen wrote, readable by this user", "encryption.identity_file: %v", err)
			return
		}
		idRecipients = d.Recipients()
	}
	recipients := append([]string(nil), e.Recipients...)
	if e.RecipientsFile != "" {
		more, err := crypto.ReadRecipientsFile(e.RecipientsFile)
		if err != nil {
			c.add(StepEncryption, StatusFail, "fix encryption.recipients_file", "encryption.recipients_file: %v", err)
			return
		}
		recipients = append(recipients, more...)
	}
	if len(recipients) == 0 {
		c.add(StepEncryption, StatusOK, "", "encrypted to the recipient of %s", e.IdentityFile)
		return
	}
	if _, err := crypto.NewEncryptor(recipients); err != nil {
		c.add(StepEncryption, StatusFail, "fix encryption.recipients (walrus keygen prints a recipient)", "encryption.recipients: %v", err)
		return
	}
	if e.IdentityFile == "" {
		c.add(StepEncryption, StatusOK, "", "encrypted to %d recipient(s); no identity on this host (restores need one)", len(recipients))
		return
	}
	for _, r := range idRecipients {
		if slices.Contains(recipients, r) {
			c.add(StepEncryption, StatusOK, "", "encrypted to %d recipient(s), one of them the identity in %s", len(recipients), e.IdentityFile)
			return
		}
	}
	c.add(StepEncryption, StatusFail,
		fmt.Sprintf("add the identity's recipient (%s) to encryption.recipients, or point encryption.identity_file at the key of one of the recipients", strings.Join(idRecipients, ", ")),
		"the identity in %s cannot decrypt what is encrypted to encryption.recipients: restores with this configuration would fail", e.IdentityFile)
}

// repoFix is the advice for a repository that cannot be reached.
const repoFix = "check repo, s3.endpoint, the credentials and the network (for a directory: that it exists and this user may write it); walrus config show prints the settings"

func (c *checker) openRepo(ctx context.Context) bool {
	if dir := fsRepoDir(c.cfg.Repo); dir != "" {
		// Opening would create it, for this user: as root, one that
		// archive_command could not write.
		if _, err := os.Stat(dir); err != nil {
			c.add(StepRepository, StatusFail, "run walrus setup --pgdata DIR (it creates the directory for the server's OS user), or create it yourself", "repository unreachable: directory %s: %v", dir, err)
			return false
		}
	}
	r, err := repo.Open(ctx, c.cfg)
	if err != nil {
		c.add(StepRepository, StatusFail, repoFix, "repository unreachable: %v", err)
		return false
	}
	c.r = r
	return true
}

// probeRepo puts, reads back and deletes an object under ProbePrefix, and
// reads the repository's identity.
func (c *checker) probeRepo(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	var rnd [12]byte
	rand.Read(rnd[:])
	key := ProbePrefix + "probe-" + hex.EncodeToString(rnd[:])
	body := []byte("walrus check probe " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	fail := func(op string, err error) {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v (--timeout): %w", c.o.Timeout, err)
		}
		c.add(StepRepository, StatusFail, repoFix, "repository %s unreachable or not writable (%s of the probe object %s): %v", c.r.Description, op, key, err)
	}
	if err := c.r.Store.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{IfNotExists: true, Size: int64(len(body))}); err != nil {
		fail("put", err)
		return
	}
	defer func() {
		if err := c.r.Store.Delete(context.WithoutCancel(ctx), key); err != nil {
			c.add(StepRepository, StatusWarn, "delete it by hand; it is never taken for WAL or a backup", "could not delete the probe object %s: %v", key, err)
		}
	}()
	info, err := c.r.Store.Stat(ctx, key)
	if err != nil {
		fail("stat", err)
		return
	}
	if info.Size != int64(len(body)) {
		fail("stat", fmt.Errorf("stored %d bytes, wrote %d", info.Size, len(body)))
		return
	}
	rc, err := c.r.Store.Get(ctx, key)
	if err != nil {
		fail("get", err)
		return
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		fail("get", err)
		return
	}
	if !bytes.Equal(got, body) {
		fail("get", errors.New("read back different bytes"))
		return
	}
	id, err := repo.ReadIdentity(ctx, c.r.Store)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		c.add(StepRepository, StatusOK, "", "%s is reachable and writable (probe object written, read back, deleted); no WAL archived yet", c.r.Description)
	case err != nil:
		c.add(StepRepository, StatusFail, "restore walrus.json from a copy, or use a new repository", "%s: %v", c.r.Description, err)
	default:
		c.id = &id
		c.add(StepRepository, StatusOK, "", "%s is reachable and writable (probe object written, read back, deleted); it belongs to system identifier %s", c.r.Description, id.SystemIdentifier)
		if err := id.CheckEncryption(c.r.Encoder.Encrypted()); err != nil {
			c.add(StepEncryption, StatusFail, "use the repository's encryption setting, or a new repository", "%v", err)
		}
	}
}

// checkLocks lists the repository locks: commands running now, and
// stale locks that killed commands left (they expire by themselves).
func (c *checker) checkLocks(ctx context.Context) {
	locks, err := repo.ListLocks(ctx, c.r.Store)
	if err != nil {
		c.add(StepLocks, StatusWarn, "", "cannot list the repository locks: %v", err)
		return
	}
	if len(locks) == 0 {
		c.add(StepLocks, StatusOK, "", "no backup-push, backup-mark or delete is running")
		return
	}
	for _, l := range locks {
		if l.Stale {
			c.add(StepLocks, StatusWarn, "nothing to do: it is ignored, and the next delete --confirm removes it", "stale lock of a command that is gone: %s", l.LockInfo)
			continue
		}
		c.add(StepLocks, StatusOK, "", "running: %s", l.LockInfo)
	}
}

func (c *checker) connect(ctx context.Context) *pgx.Conn {
	conn, err := connect(ctx, c.cfg.Postgres.DSN)
	if err != nil {
		c.add(StepServer, StatusFail, "start PostgreSQL, or set postgres.dsn (WALRUS_POSTGRES_DSN) or the PG* variables so that walrus reaches it as a superuser", "cannot connect to PostgreSQL: %v", err)
		return nil
	}
	return conn
}

func (c *checker) checkServer(ctx context.Context, conn *pgx.Conn) (inRecovery bool) {
	info, err := pg.ServerInfo(ctx, conn)
	if err != nil {
		c.add(StepServer, StatusFail, "connect as a superuser (postgres.dsn)", "%v", err)
		return false
	}
	c.add(StepServer, StatusOK, "", "PostgreSQL %d.%d, data directory %s, system identifier %d", info.VersionNum/10000, info.VersionNum%10000, info.DataDirectory, info.SystemIdentifier)
	if c.id != nil {
		if err := c.id.Check(info.SystemIdentifier, c.r.Encoder.Encrypted()); err != nil && errors.Is(err, repo.ErrForeignCluster) {
			c.add(StepRepository, StatusFail, "give each cluster its own repository (or prefix): change repo", "%v", err)
		}
	}
	if c.cfg.PGData != "" && !sameDir(c.cfg.PGData, info.DataDirectory) {
		c.add(StepServer, StatusWarn, "set pgdata, or postgres.dsn, so that both name the same cluster", "pgdata is %s but the server walrus connected to runs %s", c.cfg.PGData, info.DataDirectory)
	}
	if info.InRecovery {
		c.add(StepServer, StatusWarn, "", "the server is in recovery (a standby): with archive_mode = on it archives nothing; the primary does")
	}
	return info.InRecovery
}

func (c *checker) checkSettings(ctx context.Context, conn *pgx.Conn) {
	var mode, level, command, library string
	var modePending, levelPending bool
	// archive_command shows as "(disabled)" while archive_mode is off;
	// reset_val (this new session's value) holds it then.
	const q = `SELECT
  (SELECT setting FROM pg_settings WHERE name = 'archive_mode'),
  (SELECT pending_restart FROM pg_settings WHERE name = 'archive_mode'),
  (SELECT setting FROM pg_settings WHERE name = 'wal_level'),
  (SELECT pending_restart FROM pg_settings WHERE name = 'wal_level'),
  (SELECT CASE WHEN setting = '(disabled)' THEN reset_val ELSE setting END FROM pg_settings WHERE name = 'archive_command'),
  coalesce(current_setting('archive_library', true), '')`
	if err := conn.QueryRow(ctx, q).Scan(&mode, &modePending, &level, &levelPending, &command, &library); err != nil {
		c.add(StepServer, StatusFail, "connect as a superuser (postgres.dsn)", "read the server's settings: %v", err)
		return
	}
	setupFix := "run walrus setup --pgdata DIR (it sets archive_mode, wal_level, archive_command and restore_command), then restart PostgreSQL"
	switch m := normBool(mode); {
	case m == "on" || m == "always":
		c.add(StepArchiveMode, StatusOK, "", "archive_mode = %s", mode)
	case modePending:
		c.add(StepArchiveMode, StatusFail, "restart PostgreSQL", "archive_mode = %s: the configured value takes effect only after a restart", mode)
	default:
		c.add(StepArchiveMode, StatusFail, setupFix, "archive_mode = %s: PostgreSQL archives nothing", mode)
	}
	switch l := normWALLevel(level); {
	case l == "replica" || l == "logical":
		c.add(StepWALLevel, StatusOK, "", "wal_level = %s", level)
	case levelPending:
		c.add(StepWALLevel, StatusFail, "restart PostgreSQL", "wal_level = %s: the configured value takes effect only after a restart", level)
	default:
		c.add(StepWALLevel, StatusFail, setupFix, "wal_level = %s: base backups and archive recovery need replica or logical", level)
	}
	if library != "" {
		c.add(StepArchiveCommand, StatusFail, "ALTER SYSTEM RESET archive_library; SELECT pg_reload_conf();", "archive_library = %s is set: PostgreSQL uses it instead of archive_command", library)
		return
	}
	c.checkArchiveCommand(command)
}

// checkArchiveCommand compares archive_command with what walrus setup
// would set.
func (c *checker) checkArchiveCommand(command string) {
	want := ArchiveCommand(c.o.Binary, c.cfg.Source)
	fix := fmt.Sprintf("run walrus setup --pgdata DIR, or ALTER SYSTEM SET archive_command = %s; SELECT pg_reload_conf();", pg.QuoteConf(want))
	if c.o.Binary == "" {
		fix = "run walrus setup --pgdata DIR"
	}
	ci := ParseCommand(command)
	if !ci.WALPush {
		shown := pg.QuoteConf(command)
		c.add(StepArchiveCommand, StatusFail, fix, "wrong archive_command: archive_command = %s does not run walrus wal-push, so WAL never reaches the repository", shown)
		return
	}
	if ci.Config == "" {
		c.add(StepArchiveCommand, StatusWarn, fix, "archive_command = %s runs wal-push without --config: walrus cannot tell which repository it pushes to (the WAL switch below shows whether it is this one)", pg.QuoteConf(command))
	} else {
		// The server's environment is not this shell's: read the file
		// without WALRUS_* variables.
		other, err := config.Load(ci.Config, func(string) (string, bool) { return "", false })
		ownFile := c.cfg.Source != "" && samePath(ci.Config, c.cfg.Source)
		switch {
		case err != nil:
			c.add(StepArchiveCommand, StatusWarn, "run walrus check as the server's OS user, or with --config "+ci.Config, "archive_command = %s: cannot read its configuration %s: %v", pg.QuoteConf(command), ci.Config, err)
		case !sameRepo(other, c.cfg) && ownFile:
			c.add(StepArchiveCommand, StatusWarn, "unset the WALRUS_* variables that change the repository, or check the repository archive_command uses",
				"archive_command = %s pushes to %s as its configuration says, but this check uses %s: WALRUS_* variables of this environment change the repository", pg.QuoteConf(command), describe(other), describe(c.cfg))
		case !sameRepo(other, c.cfg):
			c.add(StepArchiveCommand, StatusFail, fmt.Sprintf("point archive_command at this configuration (%s), or run walrus check --config %s", fix, ci.Config),
				"wrong archive_command: it pushes to the repository %s (its --config %s), not to %s", describe(other), ci.Config, describe(c.cfg))
		case c.o.Binary != "" && command == want:
			c.add(StepArchiveCommand, StatusOK, "", "archive_command = %s", pg.QuoteConf(command))
		default:
			c.add(StepArchiveCommand, StatusOK, "", "archive_command = %s (its --config names the same repository)", pg.QuoteConf(command))
		}
	}
	if c.o.Binary != "" && ci.Binary != "" && !samePath(ci.Binary, c.o.Binary) {
		c.add(StepArchiveCommand, StatusWarn, "make sure both are the same walrus version, or run setup again", "archive_command runs %s, not this walrus (%s)", ci.Binary, c.o.Binary)
	}
}

func describe(cfg *config.Config) string {
	s := cfg.Repo
	if cfg.S3.Endpoint != "" {
		s += " at " + cfg.S3.Endpoint
	}
	return s
}

// sameRepo reports whether two configurations name the same repository.
func sameRepo(a, b *config.Config) bool {
	if da, db := fsRepoDir(a.Repo), fsRepoDir(b.Repo); da != "" || db != "" {
		return da != "" && db != "" && sameDir(da, db)
	}
	norm := func(s string) string { return strings.TrimRight(s, "/") }
	return norm(a.Repo) == norm(b.Repo) && strings.TrimRight(a.S3.Endpoint, "/") == strings.TrimRight(b.S3.Endpoint, "/")
}

func samePath(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return ra == rb
}

func (c *checker) checkArchiver(ctx context.Context, conn *pgx.Conn) {
	var failedCount int64
	var lastFailed string
	var failing bool
	const q = `SELECT failed_count, coalesce(last_failed_wal, ''),
       coalesce(last_failed_time > last_archived_time, last_failed_time IS NOT NULL)
FROM pg_stat_archiver`
	if err := conn.QueryRow(ctx, q).Scan(&failedCount, &lastFailed, &failing); err != nil {
		c.add(StepArchiver, StatusWarn, "", "read pg_stat_archiver: %v", err)
		return
	}
	if failing {
		c.add(StepArchiver, StatusWarn, "read the server log for the archive_command's error", "the archiver's last attempt failed (last_failed_wal %s, %d failure(s) since the statistics were reset)", lastFailed, failedCount)
	}
}

// switchAndWait writes a WAL record, switches to a new segment and waits
// until the completed segment is in the repository.
func (c *checker) switchAndWait(ctx context.Context, conn *pgx.Conn) {
	// A WAL record, so that the switch completes a segment that the server
	// archives now (with nothing written since the last switch,
	// pg_switch_wal would name a segment completed earlier, perhaps before
	// archiving was on).
	if _, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(false, 'walrus', 'check')`); err != nil {
		c.add(StepWALSwitch, StatusFail, "connect as a superuser (postgres.dsn)", "write a WAL record: %v", err)
		return
	}
	_, name, err := pg.SwitchWAL(ctx, conn)
	if err != nil {
		c.add(StepWALSwitch, StatusFail, "connect as a superuser (postgres.dsn)", "%v", err)
		return
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	delay := 100 * time.Millisecond
	var lastErr error
	for {
		info, err := repo.FindObject(wctx, c.r.Store, repo.WALBase(name), c.r.Encoder.Suffix())
		if err == nil {
			c.add(StepWALSwitch, StatusOK, "", "switched WAL; segment %s arrived in the repository as %s after %.1fs: archiving works", name, info.Key, time.Since(start).Seconds())
			return
		}
		if !errors.Is(err, storage.ErrNotFound) {
			lastErr = err
		}
		select {
		case <-wctx.Done():
			var failedCount int64
			var lastFailed string
			_ = conn.QueryRow(ctx, `SELECT failed_count, coalesce(last_failed_wal, '') FROM pg_stat_archiver`).Scan(&failedCount, &lastFailed)
			msg := fmt.Sprintf("switched WAL, but segment %s did not arrive in the repository within %v (pg_stat_archiver: %d failure(s), last failed %q)", name, c.o.Timeout, failedCount, lastFailed)
			if lastErr != nil {
				msg += fmt.Sprintf("; looking for it: %v", lastErr)
			}
			c.add(StepWALSwitch, StatusFail, "read the server log for archive_command errors; run the archive_command by hand as the server's OS user to see them; or wait longer with --timeout", "%s", msg)
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}
