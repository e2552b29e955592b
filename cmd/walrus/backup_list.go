package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walrusdb/walrus/catalog"
)

type backupListOptions struct {
	json   bool
	detail bool
}

func (o *backupListOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, `print {"backups": [...]} as JSON`)
	fs.BoolVar(&o.detail, "detail", false, "add the codec, encryption, system identifier, the delta chain's root and WAL files")
}

func newBackupListCmd(g *globals) *cobra.Command {
	var o backupListOptions
	cmd := &cobra.Command{
		Use:   "backup-list",
		Short: "List the base backups in the repository",
		Long: `backup-list reads the manifest of every backup in the repository and lists
the backups oldest first, ordered by (system identifier, timeline, start
LSN). A backup is listed once it is complete: failed or interrupted backups
never appear. It needs no encryption identity.

KIND is full or delta; a delta shows the backup it is based on (DELTA FROM)
and DELTA, the bytes of whole files and changed pages it holds itself. DATA
is what a restore writes, STORED what the backup's own parts take in the
repository; restoring a delta also reads its chain down to the full backup at
its root (DELTA ROOT, with --detail).

--json prints {"backups": [...]}, one object per backup with the keys name,
kind, start_lsn, finish_lsn, start_time, finish_time, timeline, data_size,
stored_size, delta_size (bytes), delta_from and delta_root (null for a full
backup), permanent, pg_version, system_identifier, codec, encrypted and more.`,
		Example: `  walrus --config /etc/walrus.yaml backup-list
  walrus backup-list --detail
  walrus backup-list --json | jq -r '.backups[-1].name'
  walrus backup-list --json | jq '.backups[] | select(.kind == "delta") | {name, delta_from, delta_size}'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackupList(cmd, g, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBackupList(cmd *cobra.Command, g *globals, o backupListOptions) error {
	ctx := cmd.Context()
	_, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	bs, err := catalog.ListBackups(ctx, r.Store)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(g.stdout, struct {
			Backups []catalog.Backup `json:"backups"`
		}{append([]catalog.Backup{}, bs...)})
	}
	if len(bs) == 0 {
		fmt.Fprintln(g.stderr, "no backups in the repository (walrus backup-push takes one)")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	head := []string{"NAME", "KIND", "START TIME", "FINISH TIME", "START LSN", "FINISH LSN", "TLI", "DATA", "STORED", "DELTA", "DELTA FROM", "PG"}
	if o.detail {
		head = append(head, "DELTA ROOT", "PERMANENT", "CODEC", "ENCRYPTED", "SYSTEM ID", "WAL FILES")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, b := range bs {
		from, root, delta := "-", "-", "-"
		if b.DeltaFrom != nil && b.DeltaRoot != nil {
			from, root, delta = *b.DeltaFrom, *b.DeltaRoot, sizeString(b.DeltaSize)
		}
		row := []string{b.Name, b.Kind, b.StartTime.Format(time.RFC3339), b.FinishTime.Format(time.RFC3339),
			b.StartLSN.String(), b.FinishLSN.String(), fmt.Sprint(b.Timeline), sizeString(b.DataSize), sizeString(b.StoredSize),
			delta, from, fmt.Sprintf("%d.%d", b.PGVersion/10000, b.PGVersion%10000)}
		if o.detail {
			row = append(row, root, fmt.Sprint(b.Permanent), b.Codec, fmt.Sprint(b.Encrypted), b.SystemIdentifier, b.StartWALFile+".."+b.FinishWALFile)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}
