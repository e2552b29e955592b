package main

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/walfetch"
)

func newWALFetchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-fetch NAME DEST",
		Short: "Restore one archived WAL file (restore_command)",
		Long: `wal-fetch writes the archived WAL file NAME to DEST, verified against the
checksum recorded when it was pushed, atomically (temporary name, fsync,
rename).

Exit status: 0 restored; 1 the file is not in the archive (PostgreSQL's
normal end of WAL); 128 any other failure (repository unreachable, wrong
identity, corrupt object), which makes PostgreSQL stop recovery with an error
instead of ending it early at the wrong point.`,
		Example: `  # postgresql.conf (walrus backup-fetch writes this for you)
  restore_command = 'walrus --config /etc/walrus.yaml wal-fetch %f %p'`,
		Args: func(cmd *cobra.Command, args []string) error {
			return withExit(exitRecoveryAbort, exactArgs(2)(cmd, args))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, r, err := g.openRepo(ctx)
			if err != nil {
				return withExit(exitRecoveryAbort, err)
			}
			defer r.Close()
			res, err := walfetch.Fetch(ctx, args[0], args[1], walfetch.Options{Store: r.Store, Decoder: r.Decoder, PreferredSuffix: r.Encoder.Suffix()})
			if errors.Is(err, walfetch.ErrNotFound) {
				return withExit(exitFailure, err)
			}
			if err != nil {
				return withExit(exitRecoveryAbort, err)
			}
			tracelog.InfoLogger.Printf("wal-fetch %s: restored from %s (%d bytes)", args[0], res.Key, res.Size)
			return nil
		},
	}
}
