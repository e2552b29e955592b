package main

import (
	"errors"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/internal/detach"
	"github.com/walrusdb/walrus/walfetch"
)

func newWALFetchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-fetch NAME DEST",
		Short: "Restore one archived WAL file (restore_command)",
		Long: `wal-fetch writes the archived WAL file NAME to DEST, verified against the
checksum recorded when it was pushed, atomically (temporary name, fsync,
rename). A wal-fetch killed before its rename leaves its temporary file
(.DEST.walrus-PID-...) in pg_wal; a later wal-fetch of a .history file
removes it once process PID is gone.

Exit status: 0 restored; 1 the file is not in the archive (PostgreSQL's
normal end of WAL), said only when the repository has its walrus.json; 128
any other failure (repository unreachable, a place without walrus.json such
as an unmounted file system or a wrong bucket or prefix, wrong identity,
corrupt object), which makes PostgreSQL stop recovery with an error instead
of ending it early at the wrong point.

Prefetch: after restoring a segment, wal-fetch starts a background process
(one at a time; it stays while PostgreSQL keeps asking and exits 3 seconds
after the last request) that downloads the next wal_prefetch segments (default 8;
0 turns prefetching off), following the newest timeline whose history
contains them, into a prefetch directory outside the data directory:
prefetch_dir if set, else .walrus-prefetch beside the data directory, in a
subdirectory per repository and cluster. A file appears there only
complete and verified against the recorded checksum; the next wal-fetch
checks it again (header, size, recorded checksum) and moves it to DEST, or deletes it
and fetches from the repository. Files older than the requested segment or
than 10 minutes are deleted; the directory never holds more than
wal_prefetch segments plus the downloads in flight, and a prefetcher that
sees the data directory leave recovery stops and deletes what it
prefetched. The prefetcher logs to prefetch.log in that directory. Without prefetch_dir, the data directory is
taken from pgdata, or from DEST when it is pg_wal/NAME (as PostgreSQL passes
it); otherwise nothing is prefetched.`,
		Example: `  # postgresql.conf (walrus backup-fetch writes this for you)
  restore_command = 'walrus --config /etc/walrus.yaml wal-fetch %f %p'

  # prefetch 16 segments into a directory of your choice
  restore_command = 'WALRUS_WAL_PREFETCH=16 WALRUS_PREFETCH_DIR=/var/cache/walrus walrus wal-fetch %f %p'`,
		Args: func(cmd *cobra.Command, args []string) error {
			return withExit(exitRecoveryAbort, exactArgs(2)(cmd, args))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, r, err := g.openRepo(ctx)
			if err != nil {
				return withExit(exitRecoveryAbort, err)
			}
			defer r.Close()
			opts := walfetch.Options{
				Store: r.Store, Decoder: r.Decoder, PreferredSuffix: r.Encoder.Suffix(),
				Prefetch: g.prefetch(cfg, args[1]), Logf: tracelog.WarningLogger.Printf,
			}
			res, err := walfetch.Fetch(ctx, args[0], args[1], opts)
			if errors.Is(err, walfetch.ErrNotFound) {
				return withExit(exitFailure, err)
			}
			if err != nil {
				return withExit(exitRecoveryAbort, err)
			}
			if res.Prefetched {
				tracelog.InfoLogger.Printf("wal-fetch %s: restored from the prefetch directory %s (%d bytes)", args[0], opts.Prefetch.Dir, res.Size)
			} else {
				tracelog.InfoLogger.Printf("wal-fetch %s: restored from %s (%d bytes)", args[0], res.Key, res.Size)
			}
			return nil
		},
	}
}

// prefetch configures wal-fetch's prefetching; problems only disable it.
func (g *globals) prefetch(cfg *config.Config, dest string) walfetch.Prefetch {
	if cfg.WALPrefetch == 0 {
		return walfetch.Prefetch{}
	}
	dir, err := walfetch.PrefetchDir(cfg.PrefetchDir, cfg.PGData, dest, repositoryID(cfg))
	if err != nil {
		tracelog.WarningLogger.Printf("wal-fetch: no prefetching: %v", err)
		return walfetch.Prefetch{}
	}
	if dir == "" {
		return walfetch.Prefetch{}
	}
	return walfetch.Prefetch{Dir: dir, Count: cfg.WALPrefetch, Start: func() error {
		argv, err := g.selfArgv("wal-prefetch", "--dir", dir)
		if err != nil {
			return err
		}
		if pgdata := walfetch.DataDir(cfg.PGData, dest); pgdata != "" {
			argv = append(argv, "--pgdata", pgdata)
		}
		return detach.Start(argv, nil, filepath.Join(dir, walfetch.LogFile))
	}}
}
