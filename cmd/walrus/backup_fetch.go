package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/basebackup"
)

type backupFetchOptions struct {
	tablespaceMap   []string
	targetImmediate bool
	targetAction    string
}

func (o *backupFetchOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.tablespaceMap, "tablespace-map", nil, "restore the tablespace with OID or original location OLD into directory NEW (OLD=NEW; repeatable)")
	fs.BoolVar(&o.targetImmediate, "target-immediate", false, "stop recovery as soon as the backup is consistent (recovery_target = 'immediate')")
	fs.StringVar(&o.targetAction, "target-action", basebackup.ActionPromote, "what the server does at the end of recovery: promote, pause or shutdown")
}

func newBackupFetchCmd(g *globals) *cobra.Command {
	var o backupFetchOptions
	cmd := &cobra.Command{
		Use:   "backup-fetch DEST NAME|LATEST",
		Short: "Restore a base backup into a new data directory, ready to recover",
		Long: `backup-fetch restores the backup NAME (or the newest, LATEST) into DEST,
which must not exist or be empty, and prepares recovery: recovery.signal, and
in postgresql.auto.conf a restore_command that runs this walrus binary with
the same configuration, and recovery_target_action. Start the server on DEST
(pg_ctl start) and it replays the archived WAL and promotes, with no manual
step. --target-immediate stops at the first consistent point instead.

Tablespaces are restored to their original locations, which must be absent
or empty, unless --tablespace-map OLD=NEW moves one (OLD is the tablespace's
OID or its original location).

Everything is checked before anything is written (the backup's manifest, that
every part is present, that the targets are empty); every file is checked
against its size and checksum. A restore that fails says so and leaves DEST
without pg_control, PG_VERSION and recovery.signal, so it cannot start:
remove it and retry. When the configuration came from environment variables,
it is written to DEST/walrus-restore.yaml for restore_command (mode 0600; it
may hold credentials: remove it after recovery; walrus backups skip it).`,
		Example: `  walrus --config /etc/walrus.yaml backup-fetch /var/lib/postgresql/15/restored LATEST
  walrus backup-fetch /srv/pg/new base_20261121T193012Z_000000010000000000000004 \
      --tablespace-map 16384=/srv/pg/ts_new --target-immediate`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackupFetch(cmd, g, o, args[0], args[1])
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
	cfg, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
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
	opts := basebackup.FetchOptions{
		Store:         r.Store,
		Decoder:       r.Decoder,
		Backup:        name,
		Dest:          absDest,
		TablespaceMap: spcMap,
		Concurrency:   cfg.DownloadConcurrency,
		Recovery: basebackup.Recovery{
			RestoreCommand: rc.Command,
			ConfigFile:     rc.ConfigFile,
			Target:         basebackup.RecoveryTarget{Immediate: o.targetImmediate},
			Action:         o.targetAction,
		},
	}
	if f, ok := g.stderr.(*os.File); ok && basebackup.IsTerminal(f) {
		opts.Progress = f
	}
	res, err := basebackup.Fetch(ctx, opts)
	if err != nil {
		return err
	}
	for _, n := range rc.Notes {
		tracelog.WarningLogger.Printf("backup-fetch %s: %s", res.Name, n)
	}
	spcs := ""
	for _, oid := range slices.Sorted(maps.Keys(res.Tablespaces)) {
		spcs += fmt.Sprintf(", tablespace %d into %s", oid, res.Tablespaces[oid])
	}
	tracelog.InfoLogger.Printf("backup-fetch %s: restored %d files, %s into %s%s in %s; start PostgreSQL on it to recover",
		res.Name, res.Files, sizeString(res.Bytes), res.Dest, spcs, res.Duration.Round(100_000_000))
	return nil
}
