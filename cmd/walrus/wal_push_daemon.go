package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/walpush"
)

func newWALPushDaemonCmd(g *globals) *cobra.Command {
	var idleExit time.Duration
	cmd := &cobra.Command{
		Use:   "wal-push-daemon",
		Short: "Serve wal-push for one cluster from a resident process",
		Long: `wal-push-daemon runs until stopped (SIGINT or SIGTERM) and serves the
cluster whose data directory is pgdata (WALRUS_PGDATA or PGDATA). It listens
on the Unix socket pg_wal/archive_status/.walrus/push.sock, which only the
cluster's OS user can reach, and keeps up to wal_push_concurrency-1 ready
segments being pushed ahead in the background, recording a marker for each.
wal-push, run by archive_command, then only asks the daemon: no process
start-up, connection or key parsing per segment. The daemon answers once
the requested file is durable: confirmed from its marker against the
repository (as wal-push does), or pushed right away. If the daemon is not
running or fails, wal-push pushes the file itself, so archiving never
depends on it. Run it as the cluster's OS user with the same configuration
as archive_command; a wal-push configured for another repository or
encryption setting is refused and pushes for itself. A segment whose push
ahead failed (the repository is down) is tried ahead again only after 1 s,
then 2 s, 4 s, up to a minute; PostgreSQL's own requests are always tried
at once and fail with the cause until the repository is back.

With wal_push_async set, wal-push starts the daemon itself when none
answers, with --idle-exit wal_push_async_idle: such a daemon exits after
that long without a request, and as soon as a wal-push with other
settings asks it, so that the next wal-push starts one with the new
settings. Its messages go to pg_wal/archive_status/.walrus/daemon.log, and
daemon.lock there holds its process ID.`,
		Example: `  # systemd ExecStart=, as the postgres user
  walrus --config /etc/walrus.yaml wal-push-daemon

  # or let wal-push start it: wal_push_async in the configuration, or in
  # the environment of the server that runs archive_command
  WALRUS_WAL_PUSH_ASYNC=true pg_ctl start -D /var/lib/postgresql/15/main`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			if cfg.PGData == "" {
				return fmt.Errorf("wal-push-daemon: no data directory: set pgdata (WALRUS_PGDATA or PGDATA)")
			}
			// Relative paths keep the socket's path short and are what
			// archive_command, run in the data directory, uses.
			if err := os.Chdir(cfg.PGData); err != nil {
				return fmt.Errorf("wal-push-daemon: %w", err)
			}
			if os.Getenv("GOGC") == "" {
				// The live heap is mostly the reserved segment buffers,
				// large and pointer-free, so collecting often is cheap; at
				// Go's default the garbage of ~60 pushes piled up between
				// collections and the daemon's peak RSS reached 64-74 MiB
				// on fs (44 MiB at 20; bench/RESULTS.md).
				debug.SetGCPercent(20)
			}
			tracelog.InfoLogger.Printf("wal-push-daemon: serving %s into %s", cfg.PGData, r.Description)
			return walpush.Serve(ctx, "pg_wal", walpush.Options{
				Store: r.Store, Encoder: r.Encoder, PGData: cfg.PGData,
				Concurrency: cfg.WALPushConcurrency, Repository: repositoryID(cfg),
				Logf: tracelog.InfoLogger.Printf, IdleExit: idleExit,
			})
		},
	}
	cmd.Flags().DurationVar(&idleExit, "idle-exit", 0, "exit after this long without a request (0: run until stopped)")
	return cmd
}
