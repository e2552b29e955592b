package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walrusdb/walrus/catalog"
)

type walVerifyOptions struct{ json bool }

func (o *walVerifyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, `print {"ok", "missing", "ambiguous", "broken_backups", "range", "timelines", ...} as JSON`)
}

func newWALVerifyCmd(g *globals) *cobra.Command {
	var o walVerifyOptions
	cmd := &cobra.Command{
		Use:   "wal-verify",
		Short: "Check that the archive holds every WAL segment a restore needs",
		Long: `wal-verify lists the archive once and checks that it holds every WAL
segment from the start of the oldest backup (without a backup: from the
oldest archived segment; a permanent backup, and the chain of a permanent
delta, count only when no other backup exists, since delete keeps only the
WAL they need to become consistent) up to the newest archived segment, following
timeline switches along the newest timeline's lineage (its .history file),
and that every history file a restore to the latest timeline reads is there.
It also checks, for every backup, the WAL from its start LSN to its finish
LSN: without it the backup can never become consistent.

It names each missing WAL file, each WAL file stored twice (wal-fetch
refuses those), and each backup that cannot become consistent. The exit
status is 0 only when nothing is missing; 1 otherwise. It reads only
object names and sizes, and the .history files (an encrypted repository
with more than one timeline needs encryption.identity_file).

--json prints {"ok": bool, "missing": [...], "ambiguous": [...],
"broken_backups": [{"name", "timeline", "start_lsn", "finish_lsn",
"missing"}], "range": {"start_backup", "from_lsn", "to_lsn",
"first_segment", "last_segment", "segments", ...}, "timelines":
[{"timeline", "history", "switch_lsn", "first_segment", "last_segment",
"segments"}], "wal_segment_size", "notes": [...]}.`,
		Example: `  walrus --config /etc/walrus.yaml wal-verify
  walrus wal-verify --json | jq -r '.missing[]'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWALVerify(cmd, g, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runWALVerify(cmd *cobra.Command, g *globals, o walVerifyOptions) error {
	ctx := cmd.Context()
	_, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	rep, err := catalog.VerifyWAL(ctx, r.Store, r.Decoder)
	if err != nil {
		return fmt.Errorf("wal-verify %s: %w", r.Description, err)
	}
	if o.json {
		if err := writeJSON(g.stdout, rep); err != nil {
			return err
		}
	} else {
		printWALReport(g.stdout, rep)
	}
	if rep.OK {
		return nil
	}
	var what []string
	if n := len(rep.Missing); n > 0 {
		what = append(what, fmt.Sprintf("%d WAL file(s) missing", n))
	}
	if n := len(rep.Ambiguous); n > 0 {
		what = append(what, fmt.Sprintf("%d WAL file(s) stored twice", n))
	}
	if n := len(rep.BrokenBackups); n > 0 {
		what = append(what, fmt.Sprintf("%d backup(s) cannot become consistent", n))
	}
	return withExit(exitFailure, fmt.Errorf("wal-verify %s: %s: push missing files that are still in the server's pg_wal with walrus wal-push, "+
		"remove all but one copy of a file stored twice, and take a new backup (walrus backup-push) so that a restore does not depend on the gap",
		r.Description, strings.Join(what, ", ")))
}

// printWALReport writes the report for people: the range, the timelines,
// then one line per problem and a summary.
func printWALReport(w io.Writer, rep *catalog.WALReport) {
	rg := rep.Range
	if rg.Empty {
		fmt.Fprintln(w, "no WAL to check")
	} else {
		from := "the oldest archived segment"
		if rg.StartBackup != "" {
			from = "the start of backup " + rg.StartBackup
		}
		fmt.Fprintf(w, "range: %s .. %s (%d segments, from %s at %s to %s)\n", rg.FirstSegment, rg.LastSegment, rg.Segments, from, rg.FromLSN, rg.ToLSN)
		for _, t := range rep.Timelines {
			line := fmt.Sprintf("timeline %d: %d segment(s)", t.Timeline, t.Segments)
			if t.Segments > 0 {
				line += fmt.Sprintf(", %s .. %s", t.FirstSegment, t.LastSegment)
			}
			if t.SwitchLSN != nil {
				line += fmt.Sprintf(", left at %s", *t.SwitchLSN)
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note: "+n)
	}
	for _, n := range rep.Missing {
		fmt.Fprintln(w, "MISSING "+n)
	}
	for _, n := range rep.Ambiguous {
		fmt.Fprintln(w, "STORED TWICE "+n)
	}
	for _, b := range rep.BrokenBackups {
		fmt.Fprintf(w, "BROKEN BACKUP %s (timeline %d, %s .. %s): needs %s\n", b.Name, b.Timeline, b.StartLSN, b.FinishLSN, strings.Join(b.Missing, ", "))
	}
	if rep.OK {
		fmt.Fprintln(w, "OK: the archive is complete")
	} else {
		fmt.Fprintf(w, "FAILED: %d missing, %d stored twice, %d broken backup(s)\n", len(rep.Missing), len(rep.Ambiguous), len(rep.BrokenBackups))
	}
}
