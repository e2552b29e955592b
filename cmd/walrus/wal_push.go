package main

import (
	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

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
the stored object is left untouched.`,
		Example: `  # postgresql.conf
  archive_mode = on
  archive_command = 'walrus --config /etc/walrus.yaml wal-push %p'`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			res, err := walpush.Push(ctx, args[0], walpush.Options{Store: r.Store, Encoder: r.Encoder, PGData: cfg.PGData})
			if err != nil {
				return err
			}
			if res.AlreadyStored {
				tracelog.InfoLogger.Printf("wal-push %s: already archived as %s with identical content", res.Name, res.Key)
			} else {
				tracelog.InfoLogger.Printf("wal-push %s: stored %s (%d bytes, %d stored)", res.Name, res.Key, res.RawSize, res.StoredSize)
			}
			return nil
		},
	}
}
