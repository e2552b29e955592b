package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/repo"
)

// lockJSON is one lock in locks --json: what the lock object records,
// its key and whether it is stale.
type lockJSON struct {
	Key string `json:"key"`
	repo.LockInfo
	Stale bool `json:"stale"`
}

func newLocksCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "locks [--json]",
		Short: "List the repository locks of running (or killed) commands",
		Long: `locks lists the lock objects under locks/ in the repository: one per
backup-push and backup-mark (shared) and delete --confirm (exclusive) that is
running, or that was killed and left its lock. STATE is "stale" for a lock
whose holder is taken for dead (no refresh for 30 minutes, or a process gone
from the host that took it): it is ignored, and the next delete --confirm
removes it. 'walrus unlock KEY' removes one by hand.

--json prints {"locks": [...]}, one object per lock with the keys key, mode,
command, host, pid, pid_namespace (when recorded), started, refreshed and
stale.`,
		Example: `  walrus locks
  walrus locks --json | jq -r '.locks[] | select(.stale) | .key'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			locks, err := repo.ListLocks(ctx, r.Store)
			if err != nil {
				return fmt.Errorf("locks: %w", err)
			}
			if asJSON {
				out := []lockJSON{}
				for _, l := range locks {
					out = append(out, lockJSON{Key: l.Key, LockInfo: l.LockInfo, Stale: l.Stale})
				}
				return writeJSON(g.stdout, struct {
					Locks []lockJSON `json:"locks"`
				}{out})
			}
			if len(locks) == 0 {
				fmt.Fprintln(g.stderr, "no locks: no backup-push, backup-mark or delete is running")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, strings.Join([]string{"KEY", "MODE", "COMMAND", "HOST", "PID", "STARTED", "REFRESHED", "STATE"}, "\t"))
			for _, l := range locks {
				state := "held"
				if l.Stale {
					state = "stale"
				}
				fmt.Fprintln(tw, strings.Join([]string{l.Key, string(l.Mode), l.Command, l.Host, fmt.Sprint(l.PID),
					l.Started.UTC().Format(time.RFC3339), l.Refreshed.UTC().Format(time.RFC3339), state}, "\t"))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"locks": [...]} as JSON`)
	return cmd
}

func newUnlockCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "unlock KEY [--force]",
		Short: "Remove a lock that a killed command left in the repository",
		Long: `unlock removes the lock object KEY (as 'walrus locks' lists it, with or
without the locks/ prefix). A stale lock is ignored anyway; unlock is for a
lock that still looks held, such as one of a delete killed on another host
less than 30 minutes ago, which keeps backup-push waiting. Such a lock is
removed only with --force: make sure its command is gone first (the host
and pid are in 'walrus locks'). Removing the lock of a command that still
runs lets a conflicting one run beside it; the holder stops only when it
next refreshes its lock (every 5 minutes) or, for backup-push, before it
writes its manifest.`,
		Example: `  walrus locks
  walrus unlock locks/exclusive-20261122T051200.000000000Z-0123456789ab.json --force`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := repo.LockKey(args[0]); err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			_, r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			defer r.Close()
			l, err := repo.RemoveLock(ctx, r.Store, args[0], force)
			if err != nil {
				return fmt.Errorf("unlock: %w", err)
			}
			tracelog.InfoLogger.Printf("unlock: removed %s", l.LockInfo)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove the lock even though it is not stale (its command may still run)")
	return cmd
}
