package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/catalog"
)

type backupMarkOptions struct{ impermanent bool }

func (o *backupMarkOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.impermanent, "impermanent", false, "clear the mark: retention may delete the backup again")
}

func newBackupMarkCmd(g *globals) *cobra.Command {
	var o backupMarkOptions
	cmd := &cobra.Command{
		Use:   "backup-mark NAME|LATEST [--impermanent]",
		Short: "Mark a backup permanent, so that delete never removes it",
		Long: `backup-mark marks the backup NAME (or the newest, LATEST) permanent:
walrus delete never removes it, nor the backups it is based on (a delta's
whole chain), nor the WAL from start to finish of each of them, which a
restore needs to become consistent. WAL after a permanent backup is kept only
while the retention rule keeps it: a permanent backup restores to its own
consistency point, not to later times, once newer WAL has expired.
--impermanent clears the mark.

The mark is the "permanent" field of the backup's manifest: the manifest is
rewritten with only that value changed, in one atomic replacement. Marking a
backup that already has the mark changes nothing. While a delete runs,
backup-mark waits for it (lock_wait, 5 minutes by default), then fails.`,
		Example: `  walrus backup-mark base_20261121T193012Z_000000010000000000000004
  walrus backup-mark LATEST
  walrus backup-mark base_20261121T193012Z_000000010000000000000004 --impermanent`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackupMark(cmd, g, o, args[0])
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBackupMark(cmd *cobra.Command, g *globals, o backupMarkOptions, name string) error {
	ctx := cmd.Context()
	if name != catalog.Latest {
		if err := catalog.ValidateName(name); err != nil {
			return usageError{err}
		}
	}
	cfg, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	m, changed, err := catalog.SetPermanent(ctx, r.Store, name, !o.impermanent, lockWaiting("backup-mark", cfg.LockWait))
	if err != nil {
		return fmt.Errorf("backup-mark %s: %w", name, err)
	}
	state := "permanent"
	if o.impermanent {
		state = "not permanent"
	}
	if !changed {
		tracelog.InfoLogger.Printf("backup-mark %s: already %s; nothing changed", m.Name, state)
	} else {
		tracelog.InfoLogger.Printf("backup-mark %s: now %s", m.Name, state)
	}
	if !m.IsFull() && !o.impermanent {
		links, err := catalog.ReadChain(ctx, r.Store, m)
		if err != nil {
			tracelog.WarningLogger.Printf("backup-mark %s: %v", m.Name, err)
		} else {
			var names []string
			for _, l := range links[1:] {
				names = append(names, l.Name)
			}
			tracelog.InfoLogger.Printf("backup-mark %s: delete keeps its chain with it: %s", m.Name, strings.Join(names, ", "))
		}
	}
	fmt.Fprintln(g.stdout, m.Name)
	return nil
}
