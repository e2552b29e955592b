package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/restorepoint"
)

type createRestorePointOptions struct {
	timeout time.Duration
}

func newCreateRestorePointCmd(g *globals) *cobra.Command {
	var o createRestorePointOptions
	cmd := &cobra.Command{
		Use:   "create-restore-point NAME",
		Short: "Create a named restore point and wait until its WAL is archived",
		Long: `create-restore-point calls pg_create_restore_point(NAME) on the running
cluster (connection from postgres.dsn or the PG* environment variables),
switches WAL so the segment holding it is archived, waits until that segment
is in the repository, and only then records restore-points/NAME.json. It
prints the restore point's LSN.

Names are 1 to 63 letters, digits, '-', '_' or '.', and must be unique in the
repository: PostgreSQL stops at the first restore point of a name it replays.`,
		Example: `  walrus create-restore-point before-migration-42
  walrus backup-fetch /var/lib/postgresql/15/restore --restore-point before-migration-42`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := restorepoint.ValidateName(args[0]); err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			cfg, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			rec, err := restorepoint.Create(ctx, args[0], restorepoint.CreateOptions{
				Store: r.Store, Suffix: r.Encoder.Suffix(), DSN: cfg.Postgres.DSN, Timeout: o.timeout,
			})
			if err != nil {
				return err
			}
			tracelog.InfoLogger.Printf("create-restore-point %s: at %s on timeline %d, WAL %s archived", rec.Name, rec.LSN, rec.Timeline, rec.WALFile)
			fmt.Fprintln(g.stdout, rec.LSN)
			return nil
		},
	}
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the WAL segment to reach the repository")
	return cmd
}

type restorePointListOptions struct{ json bool }

// restorePointJSON is one restore point in restore-point-list --json.
type restorePointJSON struct {
	Name             string        `json:"name"`
	LSN              pg.LSN        `json:"lsn"`
	Timeline         pg.TimelineID `json:"timeline"`
	Time             time.Time     `json:"time"`
	WALFile          string        `json:"wal_file"`
	SystemIdentifier string        `json:"system_identifier"`
	// Backup is the backup a restore to this point would start from, or
	// null when no backup precedes it.
	Backup *string `json:"backup"`
}

func newRestorePointListCmd(g *globals) *cobra.Command {
	var o restorePointListOptions
	cmd := &cobra.Command{
		Use:   "restore-point-list [--json]",
		Short: "List named restore points",
		Long: `restore-point-list prints every recorded restore point: name, LSN,
timeline, time, and the backup a restore to it would start from (the newest
backup that finished before it).`,
		Example: `  walrus restore-point-list
  walrus restore-point-list --json | jq -r '.restore_points[].name'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			rps, err := restorepoint.List(ctx, r.Store)
			if err != nil {
				return err
			}
			backups, err := catalog.ListBackups(ctx, r.Store)
			if err != nil {
				return err
			}
			out := make([]restorePointJSON, 0, len(rps))
			for _, rp := range rps {
				j := restorePointJSON{Name: rp.Name, LSN: rp.LSN, Timeline: rp.Timeline, Time: rp.Time, WALFile: rp.WALFile, SystemIdentifier: rp.SystemIdentifier}
				for i := len(backups) - 1; i >= 0; i-- {
					b := backups[i]
					if b.Timeline <= rp.Timeline && b.FinishLSN <= rp.LSN {
						name := b.Name
						j.Backup = &name
						break
					}
				}
				out = append(out, j)
			}
			if o.json {
				return writeJSON(g.stdout, map[string]any{"restore_points": out})
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tLSN\tTIMELINE\tTIME\tRESTORES FROM")
			for _, j := range out {
				from := "(no earlier backup)"
				if j.Backup != nil {
					from = *j.Backup
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", j.Name, j.LSN, j.Timeline, j.Time.Format(time.RFC3339), from)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON: {\"restore_points\": [...]}")
	return cmd
}
