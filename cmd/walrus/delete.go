package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/walrusdb/walrus/internal/progress"
	"github.com/walrusdb/walrus/repo"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/catalog"
	"github.com/walrusdb/walrus/restorepoint"
)

type deleteOptions struct {
	confirm   bool
	json      bool
	orphanAge time.Duration
}

func (o *deleteOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.confirm, "confirm", false, "delete what the plan says; without it nothing is deleted")
	fs.BoolVar(&o.json, "json", false, `print the plan as JSON: {"rule", "keep", "delete", "orphans", "wal", "wal_kept_from", "wal_protected", "restore_points", "objects", "bytes", "notes", "confirmed"}`)
	fs.DurationVar(&o.orphanAge, "orphan-age", catalog.DefaultOrphanAge, "delete a backup directory without a manifest once nothing was written to it for this long (younger ones may be a backup in progress)")
}

func newDeleteCmd(g *globals) *cobra.Command {
	var o deleteOptions
	cmd := &cobra.Command{
		Use:   "delete retain N | before NAME|TIME | everything [--confirm]",
		Short: "Delete old backups, WAL and restore points (prints the plan; --confirm executes it)",
		Long: `delete works out what a retention rule removes and prints the plan: the
backups kept and why, the backups deleted, the runs of WAL deleted, the
restore points deleted with their WAL, and the bytes freed. Without --confirm
it changes nothing; with --confirm it executes the plan.

Rules (backups are ordered by timeline and start LSN, from their manifests):
  retain N       keep the N newest full backups and every backup newer than
                 the oldest of them.
  before NAME    keep backup NAME (or LATEST) and every newer backup.
  before TIME    keep what a restore to TIME or later needs: the newest
                 backup that finished at or before TIME, and every newer one.
                 TIME is RFC 3339 or '2026-11-21 18:50:00+00'.
  everything     delete every backup that is not permanent, and the WAL.

Whatever the rule: permanent backups (walrus backup-mark) are kept, and a
kept backup never loses the backups it is based on: a delta keeps its whole
chain down to its full backup. WAL older than the start of the oldest backup
the rule keeps is deleted, on every timeline, except the WAL from start to
finish of every kept backup (so a permanent backup can always become
consistent); .history files are always kept. A repository without any backup
keeps its WAL (except with everything). A restore point is deleted when no
kept backup precedes it with the WAL to reach it.

Backup directories without a manifest are deleted too when they are what an
interrupted delete left, or when nothing was written to them for
--orphan-age (default 24h); younger ones may be a backup in progress.

Execution order: the manifests first, newest first (a backup disappears as a
whole; a delta before its base), then their data, then WAL (oldest first),
then restore points. A delete that stops part way never leaves a listed
backup that cannot be restored; running the same delete again finishes it.

With --confirm, delete takes the repository's exclusive lock (an object
under locks/) before it plans: it waits up to lock_wait (5 minutes by
default) while a backup-push or backup-mark runs, then fails, deleting
nothing; and no backup-push or backup-mark starts while it runs (they wait
for it the same way). A lock left by a killed command expires 30 minutes
after its last refresh, at once on the host that took it.`,
		Example: `  walrus delete retain 7                 # print the plan
  walrus delete retain 7 --confirm       # execute it
  walrus delete before base_20261121T193012Z_000000010000000000000004 --confirm
  walrus delete before '2026-11-01 00:00:00+00' --json | jq '.delete[].name'
  walrus delete everything --confirm`,
		Args: func(cmd *cobra.Command, args []string) error {
			_, err := parseRule(args)
			return err
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDelete(cmd, g, o, args)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// parseRule reads the rule from the arguments.
func parseRule(args []string) (catalog.Rule, error) {
	bad := func(format string, a ...any) (catalog.Rule, error) {
		return catalog.Rule{}, usageError{fmt.Errorf(format+": use delete retain N, delete before NAME|TIME or delete everything", a...)}
	}
	if len(args) == 0 {
		return bad("delete needs a rule")
	}
	switch args[0] {
	case catalog.RuleRetain:
		if len(args) != 2 {
			return bad("retain takes one number")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			return bad("retain %q: give the number of full backups to keep, at least 1", args[1])
		}
		return catalog.Rule{Kind: catalog.RuleRetain, Retain: n}, nil
	case catalog.RuleBefore:
		if len(args) != 2 {
			return bad("before takes a backup name or a time")
		}
		if args[1] == catalog.Latest {
			return catalog.Rule{Kind: catalog.RuleBefore, Name: catalog.Latest}, nil
		}
		if t, err := restorepoint.ParseTime(args[1]); err == nil {
			return catalog.Rule{Kind: catalog.RuleBefore, Time: t}, nil
		}
		if err := catalog.ValidateName(args[1]); err != nil {
			return bad("before %q is neither a time nor a backup name", args[1])
		}
		return catalog.Rule{Kind: catalog.RuleBefore, Name: args[1]}, nil
	case catalog.RuleEverything:
		if len(args) != 1 {
			return bad("everything takes no argument")
		}
		return catalog.Rule{Kind: catalog.RuleEverything}, nil
	}
	return bad("unknown rule %q", args[0])
}

func runDelete(cmd *cobra.Command, g *globals, o deleteOptions, args []string) error {
	ctx := cmd.Context()
	rule, err := parseRule(args)
	if err != nil {
		return err
	}
	cfg, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	var lock *repo.Lock
	if o.confirm {
		// The exclusive lock before planning: the plan printed is of the
		// repository as it is deleted, with no backup-push or
		// backup-mark running.
		if lock, err = repo.AcquireLock(ctx, r.Store, repo.LockExclusive, "delete", lockWaiting("delete", cfg.LockWait)); err != nil {
			return fmt.Errorf("delete %s: %w; nothing was deleted", rule, err)
		}
		defer func() {
			if rerr := lock.Release(ctx); rerr != nil {
				tracelog.WarningLogger.Printf("delete %s: %v", rule, rerr)
			}
		}()
		ctx = lock.Context()
	}
	recs, err := restorepoint.List(ctx, r.Store)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	rps := make([]catalog.RestorePoint, 0, len(recs))
	for _, rec := range recs {
		rps = append(rps, catalog.RestorePoint{Name: rec.Name, LSN: rec.LSN, Timeline: rec.Timeline})
	}
	plan, err := catalog.PlanDeletion(ctx, catalog.PlanOptions{Store: r.Store, Decoder: r.Decoder, Rule: rule, RestorePoints: rps, OrphanAge: o.orphanAge})
	if err != nil {
		return fmt.Errorf("delete %s: %w", rule, err)
	}
	if o.json {
		if err := writeJSON(g.stdout, struct {
			*catalog.DeletionPlan
			Confirmed bool `json:"confirmed"`
		}{plan, o.confirm}); err != nil {
			return err
		}
	} else {
		printPlan(g.stdout, plan)
	}
	if plan.Empty() {
		tracelog.InfoLogger.Printf("delete %s: nothing to delete", rule)
		return nil
	}
	if !o.confirm {
		tracelog.InfoLogger.Printf("delete %s: nothing was deleted: run it again with --confirm to delete %d object(s), %s", rule, plan.Objects, sizeString(plan.Bytes))
		return nil
	}
	opts := catalog.ExecuteOptions{Held: lock}
	if f, ok := g.stderr.(*os.File); ok && progress.IsTerminal(f) {
		opts.Progress = f
	}
	res, err := plan.Execute(ctx, r.Store, opts)
	if err != nil {
		return fmt.Errorf("delete %s: %w (%d object(s), %s deleted before it stopped)", rule, err, res.Objects, sizeString(res.Bytes))
	}
	tracelog.InfoLogger.Printf("delete %s: deleted %d backup(s), %d WAL file(s), %d restore point(s): %d object(s), %s",
		rule, len(plan.Delete)+len(plan.Orphans), walFiles(plan), len(plan.RestorePoints), res.Objects, sizeString(res.Bytes))
	return nil
}

func walFiles(p *catalog.DeletionPlan) int {
	n := 0
	for _, w := range p.WAL {
		n += w.Files
	}
	return n
}

// printPlan writes the plan for people: one line per backup kept or
// deleted, per WAL run and per restore point, then the totals.
func printPlan(w io.Writer, p *catalog.DeletionPlan) {
	fmt.Fprintf(w, "plan: delete %s\n", p.Rule)
	for _, b := range p.Keep {
		fmt.Fprintf(w, "keep    backup %s (%s, timeline %d, %s): %s\n", b.Name, kindOf(b), b.Timeline, b.StartLSN, b.Reason)
	}
	for _, b := range p.Delete {
		fmt.Fprintf(w, "DELETE  backup %s (%s, timeline %d, %s): %s; %d object(s), %s\n", b.Name, kindOf(b), b.Timeline, b.StartLSN, b.Reason, b.Objects, sizeString(b.Bytes))
	}
	for _, o := range p.Orphans {
		fmt.Fprintf(w, "DELETE  backups/%s/ (no manifest): %s; %d object(s), %s\n", o.Name, o.Reason, o.Objects, sizeString(o.Bytes))
	}
	for _, r := range p.WAL {
		fmt.Fprintf(w, "DELETE  WAL %s .. %s (timeline %d): %d file(s), %s\n", r.First, r.Last, r.Timeline, r.Files, sizeString(r.Bytes))
	}
	for _, r := range p.WALProtected {
		fmt.Fprintf(w, "keep    WAL %s .. %s: backup %s needs it to become consistent\n", r.First, r.Last, r.Backup)
	}
	if p.WALKeptFrom != "" {
		fmt.Fprintf(w, "keep    WAL from %s on, on every timeline, and every .history file\n", p.WALKeptFrom)
	}
	for _, r := range p.RestorePoints {
		fmt.Fprintf(w, "DELETE  restore point %s (%s, timeline %d): %s\n", r.Name, r.LSN, r.Timeline, r.Reason)
	}
	for _, n := range p.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	orphans := ""
	if len(p.Orphans) > 0 {
		orphans = fmt.Sprintf(", %d backup directory(ies) without a manifest", len(p.Orphans))
	}
	fmt.Fprintf(w, "total: %d backup(s)%s, %d WAL file(s), %d restore point(s): %d object(s), %s\n",
		len(p.Delete), orphans, walFiles(p), len(p.RestorePoints), p.Objects, sizeString(p.Bytes))
}

func kindOf(b catalog.PlannedBackup) string {
	s := b.Kind
	if b.DeltaFrom != nil {
		s += " of " + *b.DeltaFrom
	}
	if b.Permanent {
		s += ", permanent"
	}
	return strings.TrimSpace(s)
}
