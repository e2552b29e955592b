package main

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/walfetch"
)

// newWALPrefetchCmd is the background prefetcher that wal-fetch starts
// detached; it is not meant to be run by hand.
func newWALPrefetchCmd(g *globals) *cobra.Command {
	var dir, pgdata string
	cmd := &cobra.Command{
		Use:    "wal-prefetch --dir DIR",
		Short:  "Download the WAL segments after the last one wal-fetch restored (started by wal-fetch)",
		Hidden: true,
		Long: `wal-prefetch is started by wal-fetch, detached, to download the next
wal_prefetch segments into the prefetch directory DIR. It exits at once if
another prefetcher holds DIR's lock, and once wal-fetch has asked for
nothing new for 3 seconds. With --pgdata it stops, deleting what it prefetched, once that
data directory has left recovery (no recovery.signal or standby.signal).`,
		Example: `  walrus wal-prefetch --dir /var/lib/postgresql/15/.walrus-prefetch/0123456789abcdef`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usageError{errors.New("wal-prefetch needs --dir")}
			}
			ctx := cmd.Context()
			cfg, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			return walfetch.RunPrefetcher(ctx, walfetch.RunOptions{
				Dir: dir, Count: cfg.WALPrefetch, Concurrency: cfg.DownloadConcurrency, PGData: pgdata,
				Linger: walfetch.DefaultLinger,
				Fetch:  walfetch.Options{Store: r.Store, Decoder: r.Decoder, PreferredSuffix: r.Encoder.Suffix()},
				Logf:   tracelog.InfoLogger.Printf,
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "prefetch directory (as wal-fetch computed it)")
	cmd.Flags().StringVar(&pgdata, "pgdata", "", "data directory in recovery: stop once it has left recovery")
	return cmd
}
