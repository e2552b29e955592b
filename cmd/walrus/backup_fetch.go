package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/basebackup"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/restorepoint"
)

type backupFetchOptions struct {
	tablespaceMap   []string
	targetImmediate bool
	targetAction    string
	restorePoint    string
	targetTime      string
	targetLSN       string
	targetTimeline  string
	allowUnauth     bool
}

func (o *backupFetchOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.tablespaceMap, "tablespace-map", nil, "restore the tablespace with OID or original location OLD into directory NEW (OLD=NEW; repeatable)")
	fs.BoolVar(&o.targetImmediate, "target-immediate", false, "stop recovery as soon as the backup is consistent (recovery_target = 'immediate')")
	fs.StringVar(&o.targetAction, "target-action", basebackup.ActionPromote, "what the server does at the end of recovery: promote, pause or shutdown")
	fs.StringVar(&o.restorePoint, "restore-point", "", "recover to the named restore point (walrus create-restore-point)")
	fs.StringVar(&o.targetTime, "target-time", "", "recover to this time: RFC 3339 or PostgreSQL's form, e.g. '2026-11-21 18:50:00.123456+00'")
	fs.StringVar(&o.targetLSN, "target-lsn", "", "recover to this WAL position, e.g. 0/16B3748")
	fs.StringVar(&o.targetTimeline, "target-timeline", "", "recovery_target_timeline: latest (PostgreSQL's default), current, or a timeline number")
	fs.BoolVar(&o.allowUnauth, "allow-unauthenticated", false, "on an encrypted repository, restore backups whose manifest has no authenticator (written by a walrus older than authenticators); a manifest that does not match its authenticator is never restored")
}

// target builds the recovery target from the flags; at most one may be set.
func (o *backupFetchOptions) target() (restorepoint.Target, error) {
	var t restorepoint.Target
	n := 0
	if o.targetImmediate {
		t.Kind, n = restorepoint.Immediate, n+1
	}
	if o.restorePoint != "" {
		if err := restorepoint.ValidateName(o.restorePoint); err != nil {
			return t, err
		}
		t.Kind, t.Name, n = restorepoint.Name, o.restorePoint, n+1
	}
	if o.targetTime != "" {
		tm, err := restorepoint.ParseTime(o.targetTime)
		if err != nil {
			return t, err
		}
		t.Kind, t.Time, n = restorepoint.Time, tm, n+1
	}
	if o.targetLSN != "" {
		l, err := pg.ParseLSN(o.targetLSN)
		if err != nil {
			return t, fmt.Errorf("--target-lsn: %w", err)
		}
		t.Kind, t.LSN, n = restorepoint.LSN, l, n+1
	}
	if n > 1 {
		return t, fmt.Errorf("give at most one of --target-immediate, --restore-point, --target-time and --target-lsn")
	}
	if tl := o.targetTimeline; tl != "" && tl != "latest" && tl != "current" {
		if _, err := strconv.ParseUint(tl, 10, 32); err != nil {
			return t, fmt.Errorf("--target-timeline %q: use latest, current or a timeline number", tl)
		}
	}
	t.Timeline = o.targetTimeline
	return t, nil
}

func newBackupFetchCmd(g *globals) *cobra.Command {
	var o backupFetchOptions
	cmd := &cobra.Command{
		Use:   "backup-fetch DEST [NAME|LATEST]",
		Short: "Restore a base backup into a new data directory, ready to recover",
		Long: `backup-fetch restores the backup NAME (or the newest, LATEST) into DEST,
which must not exist or be empty, and prepares recovery: recovery.signal, and
in postgresql.auto.conf a restore_command that runs this walrus binary with
the same configuration, and recovery_target_action; the recovery settings the
backup's postgresql.auto.conf held from an earlier restore (restore_command,
recovery_target_*) are commented out and named. Start the server on DEST
(pg_ctl start) and it replays the archived WAL and promotes, with no manual
step. --target-immediate stops at the first consistent point instead.

Point-in-time recovery: --restore-point NAME, --target-time T or
--target-lsn L make recovery stop exactly there and promote. A restore point
is reached by the LSN and timeline recorded for it (recovery_target_lsn,
exclusive, right after its record), not by its name, so that another restore
point of the same name earlier in WAL (left by an interrupted
create-restore-point) cannot end recovery too early. Without a backup
name (or with LATEST), walrus picks the newest backup that finished before the
target, and says which and why. Before anything is written it checks that the
target is reachable: the restore point exists, some backup precedes the
target, and every WAL file from that backup's start to the target is in the
repository.

Tablespaces are restored to their original locations, which must be absent
or empty, unless --tablespace-map OLD=NEW moves one (OLD is the tablespace's
OID or its original location).

A delta backup is restored with its whole chain, down to the full backup at
its root: each page comes from the newest backup that holds it, and files
deleted between backups do not appear.

Everything is checked before anything is written (the manifests of the backup
and of its chain, that every part of each is present, that the targets are
empty). On an encrypted repository each manifest must match its
authenticator, the SHA-256 of the manifest that backup-push wrote encrypted
beside it (manifests are plaintext, so that listing and delta planning need
no identity): a manifest changed in the bucket is refused. Every file is checked
against its size and checksum. A restore that fails says so and leaves DEST
without pg_control, PG_VERSION and recovery.signal, so it cannot start:
remove it and retry. When the configuration came from environment variables,
it is written to DEST/walrus-restore.yaml for restore_command (mode 0600; it
may hold credentials: remove it after recovery; walrus backups skip it).`,
		Example: `  walrus --config /etc/walrus.yaml backup-fetch /var/lib/postgresql/15/restored LATEST
  walrus backup-fetch /srv/pg/before-migration --restore-point before-migration-42
  walrus backup-fetch /srv/pg/yesterday --target-time '2026-11-20 23:00:00+00'
  walrus backup-fetch /srv/pg/new base_20261121T193012Z_000000010000000000000004 \
      --tablespace-map 16384=/srv/pg/ts_new --target-immediate`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("backup-fetch takes DEST and an optional backup name, got %d arguments", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := "LATEST"
			if len(args) == 2 {
				name = args[1]
			}
			return runBackupFetch(cmd, g, o, args[0], name)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBackupFetch(cmd *cobra.Command, g *globals, o backupFetchOptions, dest, name string) error {
	ctx := cmd.Context()
	spcMap := map[string]string{}
	for _, kv := range o.tablespaceMap {
		old, nw, ok := strings.Cut(kv, "=")
		if !ok || old == "" || nw == "" {
			return usageError{fmt.Errorf("--tablespace-map %q: want OLD=NEW, OLD an OID or the original location", kv)}
		}
		spcMap[old] = nw
	}
	target, err := o.target()
	if err != nil {
		return usageError{err}
	}
	cfg, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	choice, err := restorepoint.Resolve(ctx, r.Store, r.Decoder, name, target)
	if err != nil {
		return fmt.Errorf("backup-fetch: %w", err)
	}
	tracelog.InfoLogger.Printf("backup-fetch: restoring %s", choice.Reason)
	fmt.Fprintf(g.stdout, "%s\n", choice.Backup.Name)
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return fmt.Errorf("backup-fetch: find the walrus binary for restore_command: %w", err)
	}
	absDest, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("backup-fetch: %w", err)
	}
	rc, err := basebackup.RestoreCommandFor(cfg, g.configPath, exe, absDest, os.Environ())
	if err != nil {
		return fmt.Errorf("backup-fetch: %w", err)
	}
	rt := basebackup.RecoveryTarget{
		Immediate: target.Kind == restorepoint.Immediate,
		Time:      target.Time,
		LSN:       target.LSN,
		Name:      target.Name,
		Timeline:  target.Timeline,
	}
	if rp := choice.RestorePoint; rp != nil {
		// Stop right after the restore point's record, found by the LSN
		// recorded for it, on its timeline: PostgreSQL would stop at the
		// first restore point of the name it replays, and one whose
		// create-restore-point was interrupted (or made outside walrus)
		// may come earlier in WAL (TRAPS.md 27).
		rt.Name, rt.LSN, rt.Exclusive = "", rp.LSN, true
		if rt.Timeline == "" {
			rt.Timeline = strconv.FormatUint(uint64(rp.Timeline), 10)
		}
	}
	opts := basebackup.FetchOptions{
		Store:                r.Store,
		Decoder:              r.Decoder,
		Backup:               choice.Backup.Name,
		AllowUnauthenticated: o.allowUnauth,
		Dest:                 absDest,
		TablespaceMap:        spcMap,
		Concurrency:          cfg.DownloadConcurrency,
		Recovery: basebackup.Recovery{
			RestoreCommand: rc.Command,
			ConfigFile:     rc.ConfigFile,
			Target:         rt,
			Action:         o.targetAction,
		},
	}
	if f, ok := g.stderr.(*os.File); ok && progress.IsTerminal(f) {
		opts.Progress = f
	}
	res, err := basebackup.Fetch(ctx, opts)
	if err != nil {
		return err
	}
	for _, n := range rc.Notes {
		tracelog.WarningLogger.Printf("backup-fetch %s: %s", res.Name, n)
	}
	if len(res.DisabledSettings) > 0 {
		tracelog.InfoLogger.Printf("backup-fetch %s: commented out the recovery settings the backup's postgresql.auto.conf held from an earlier restore (%s), so that only this restore's apply",
			res.Name, strings.Join(res.DisabledSettings, "; "))
	}
	spcs := ""
	for _, oid := range slices.Sorted(maps.Keys(res.Tablespaces)) {
		spcs += fmt.Sprintf(", tablespace %d into %s", oid, res.Tablespaces[oid])
	}
	tracelog.InfoLogger.Printf("backup-fetch %s: restored %d files, %s into %s%s in %s; start PostgreSQL on it to recover",
		res.Name, res.Files, sizeString(res.Bytes), res.Dest, spcs, res.Duration.Round(100_000_000))
	return nil
}
