package main

import (
	"fmt"
	"os"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/basebackup"
)

type backupPushOptions struct {
	full                 bool
	deltaFrom            string
	ignoreChecksumErrors bool
	spreadCheckpoint     bool
}

func (o *backupPushOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.full, "full", false, "take a full backup, not a delta")
	fs.StringVar(&o.deltaFrom, "delta-from", "", "take a delta based on this backup (NAME or LATEST), whatever delta_max_steps says")
	fs.BoolVar(&o.ignoreChecksumErrors, "ignore-checksum-errors", false, "store pages that fail checksum verification as they are, with a warning, instead of failing")
	fs.BoolVar(&o.spreadCheckpoint, "spread-checkpoint", false, "let pg_backup_start wait for a spread checkpoint instead of an immediate one")
}

func newBackupPushCmd(g *globals) *cobra.Command {
	var o backupPushOptions
	cmd := &cobra.Command{
		Use:   "backup-push [PGDATA]",
		Short: "Take a base backup of the running cluster",
		Long: `backup-push takes a base backup of the running cluster into the repository
and prints its name on stdout. Run it on the database host: it reads the data
directory (the argument, pgdata in the config, or PGDATA) and connects with
postgres.dsn or the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE,
PGPASSWORD) as a superuser or a role allowed to run pg_backup_start.

The cluster must archive its WAL into the same repository (archive_command =
'walrus wal-push %p'): the backup exists only once the WAL from its start to
its end is there; backup-push waits up to backup_wal_timeout (5m) for it, then
fails naming the missing segment and archive_command's failures. Parts are uploaded upload_concurrency at a time, cut at
part_size; backup_rate_limit caps the read rate. A backup that fails or is
interrupted leaves no backup behind and no backup open on the server. The
backup belongs to its database session: backup-push checks it every 5 s while
it copies, and fails at once if the session ended (terminated, a server
restart, a lost connection), since PostgreSQL has then aborted the backup. Only
one backup of a cluster runs at a time. It holds the repository's shared
lock (locks/) from before it chooses a delta base until its manifest is
written: while a delete runs it waits up to lock_wait (5m), then fails.

By default the backup is a page delta of the newest backup in the repository
while that backup's chain holds fewer than delta_max_steps deltas (default 6;
0 means always full): relation files store only the pages whose LSN is at or
past the base backup's start, or that cannot be trusted; other files, the
fsm/vm/init forks, and files new or shorter since the base are stored whole;
a relation file with no page changed costs only its manifest entry. When the
base is unusable (another cluster or timeline branch, data_checksums switched,
its chain incomplete) walrus says why and takes a full backup. --full forces
a full backup; --delta-from bases the delta on the backup named.

Pages are verified against their checksums as they are read (on clusters with
data checksums); a page that fails twice fails the backup, naming the file and
block, unless --ignore-checksum-errors.`,
		Example: `  walrus --config /etc/walrus.yaml backup-push /var/lib/postgresql/15/main
  PGHOST=/run/postgresql walrus backup-push --full
  walrus backup-push --delta-from base_20261121T193012Z_000000010000000000000004`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError{fmt.Errorf("%s takes at most 1 argument (PGDATA), got %d", cmd.CommandPath(), len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.full && o.deltaFrom != "" {
				return usageError{fmt.Errorf("--full and --delta-from contradict each other: give one")}
			}
			return runBackupPush(cmd, g, o, args)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBackupPush(cmd *cobra.Command, g *globals, o backupPushOptions, args []string) error {
	ctx := cmd.Context()
	cfg, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	pgdata := cfg.PGData
	if len(args) == 1 {
		pgdata = args[0]
	}
	opts := basebackup.Options{
		Store:                r.Store,
		Encoder:              r.Encoder,
		Decoder:              r.Decoder,
		PGData:               pgdata,
		DSN:                  cfg.Postgres.DSN,
		PartSize:             cfg.PartSize,
		Concurrency:          cfg.UploadConcurrency,
		RateLimit:            cfg.BackupRateLimit,
		SpreadCheckpoint:     o.spreadCheckpoint,
		Full:                 o.full,
		DeltaFrom:            o.deltaFrom,
		DeltaMaxSteps:        cfg.DeltaMaxSteps,
		IgnoreChecksumErrors: o.ignoreChecksumErrors,
		LockWait:             cfg.LockWait,
		WALTimeout:           cfg.BackupWALTimeout,
		Logf:                 tracelog.DebugLogger.Printf,
		Infof:                tracelog.InfoLogger.Printf,
	}
	if f, ok := g.stderr.(*os.File); ok && progress.IsTerminal(f) {
		opts.Progress = f
	}
	res, err := basebackup.Push(ctx, opts)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		tracelog.WarningLogger.Printf("backup-push %s: %s", res.Name, w)
	}
	kind := "full backup"
	if res.DeltaFrom != "" {
		kind = fmt.Sprintf("delta of %s (%s of whole files and changed pages)", res.DeltaFrom, sizeString(res.DeltaSize))
	}
	tracelog.InfoLogger.Printf("backup-push %s: done in %s: %s, %d files, %s of data, %s stored in %d parts, WAL %s to %s on timeline %d",
		res.Name, res.Duration.Round(100_000_000), kind, res.Files, sizeString(res.DataSize), sizeString(res.StoredSize), res.Parts, res.StartLSN, res.FinishLSN, res.Timeline)
	fmt.Fprintln(g.stdout, res.Name)
	return nil
}

// sizeString formats a byte count for people.
func sizeString(n int64) string { return progress.HumanBytes(n) }
