package main

import (
	"errors"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/walpush"
)

func newWALPushCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-push PATH",
		Short: "Archive one WAL file (archive_command)",
		Long: `wal-push compresses, encrypts (when recipients are configured) and stores
one WAL segment, .history or .backup file under wal/ in the repository. It
exits 0 only once the object is durable. A file already archived with the
same content exits 0; different content under the same name is refused and
the stored object is left untouched.

When PATH is pg_wal/NAME, wal-push also pushes, in parallel, up to
wal_push_concurrency-1 other whole segments that PostgreSQL has marked ready
(pg_wal/archive_status/*.ready) and records a marker for each in
pg_wal/archive_status/.walrus. When PostgreSQL then asks for such a segment,
wal-push checks that the file is the one pushed (same inode and times, else
same digest) and that the repository holds the recorded object with the
recorded checksum and sizes (one Stat), and exits 0 without uploading; if
the object is missing or differs, it pushes the file as usual. Failures of those extra pushes never fail the requested one.
PostgreSQL alone marks files done.

When a wal-push-daemon serves the cluster (its socket
pg_wal/archive_status/.walrus/push.sock answers), wal-push only asks it and
waits for its answer; if the daemon fails, wal-push pushes the file itself.`,
		Example: `  # postgresql.conf
  archive_mode = on
  archive_command = 'walrus --config /etc/walrus.yaml wal-push %p'

  # push up to 8 segments at once when PostgreSQL falls behind
  WALRUS_WAL_PUSH_CONCURRENCY=8 walrus wal-push pg_wal/000000010000000000000042`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := filepath.Base(args[0])
			cfg, err := g.load()
			if err != nil {
				return err
			}
			dres, used, err := walpush.ViaDaemon(ctx, args[0], repositoryID(cfg), cfg.Encryption.Enabled())
			switch {
			case used && err == nil:
				tracelog.InfoLogger.Printf("wal-push %s: durable as %s (via wal-push-daemon)", name, dres.Key)
				return nil
			case used && errors.Is(err, walpush.ErrConflict):
				return err
			case used:
				tracelog.WarningLogger.Printf("wal-push %s: %v; pushing it from this process", name, err)
			}
			cfg, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			res, err := walpush.Archive(ctx, args[0], walpush.Options{
				Store: r.Store, Encoder: r.Encoder, PGData: cfg.PGData,
				Concurrency: cfg.WALPushConcurrency, Repository: repositoryID(cfg),
				Logf: tracelog.WarningLogger.Printf,
			})
			for _, x := range res.Extras {
				if x.Err != nil {
					tracelog.WarningLogger.Printf("wal-push %s: pushing %s ahead failed (it is pushed when PostgreSQL asks for it): %v", name, x.Name, x.Err)
				} else {
					tracelog.InfoLogger.Printf("wal-push %s: pushed %s ahead as %s", name, x.Name, x.Result.Key)
				}
			}
			if err != nil {
				return err
			}
			switch {
			case res.Confirmed:
				tracelog.InfoLogger.Printf("wal-push %s: pushed ahead earlier; confirmed %s in the repository", res.Name, res.Key)
			case res.AlreadyStored:
				tracelog.InfoLogger.Printf("wal-push %s: already archived as %s with identical content", res.Name, res.Key)
			default:
				tracelog.InfoLogger.Printf("wal-push %s: stored %s (%d bytes, %d stored)", res.Name, res.Key, res.RawSize, res.StoredSize)
			}
			return nil
		},
	}
}

// repositoryID names the repository for wal-push markers and the
// prefetch directory: two repositories never share it.
func repositoryID(cfg *config.Config) string {
	return cfg.Repo + "\n" + cfg.S3.Endpoint
}
