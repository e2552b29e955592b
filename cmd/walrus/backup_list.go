package main

import (
	"encoding/json"
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
	fs.BoolVar(&o.detail, "detail", false, "add the codec, encryption, system identifier, delta base and WAL files")
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

--json prints {"backups": [...]}, one object per backup with the keys name,
kind, start_lsn, finish_lsn, start_time, finish_time, timeline, data_size,
stored_size (bytes), delta_from (null for a full backup), delta_root,
permanent, pg_version, system_identifier, codec, encrypted and more.`,
		Example: `  walrus --config /etc/walrus.yaml backup-list
  walrus backup-list --detail
  walrus backup-list --json | jq -r '.backups[-1].name'`,
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
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Backups []catalog.Backup `json:"backups"`
		}{append([]catalog.Backup{}, bs...)})
	}
	if len(bs) == 0 {
		fmt.Fprintln(g.stderr, "no backups in the repository (walrus backup-push takes one)")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	head := []string{"NAME", "KIND", "START TIME", "FINISH TIME", "START LSN", "FINISH LSN", "TLI", "DATA", "STORED", "PG"}
	if o.detail {
		head = append(head, "PERMANENT", "CODEC", "ENCRYPTED", "SYSTEM ID", "DELTA FROM", "WAL FILES")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, b := range bs {
		row := []string{b.Name, b.Kind, b.StartTime.Format(time.RFC3339), b.FinishTime.Format(time.RFC3339),
			b.StartLSN.String(), b.FinishLSN.String(), fmt.Sprint(b.Timeline), sizeString(b.DataSize), sizeString(b.StoredSize),
			fmt.Sprintf("%d.%d", b.PGVersion/10000, b.PGVersion%10000)}
		if o.detail {
			from := "-"
			if b.DeltaFrom != nil {
				from = *b.DeltaFrom
			}
			row = append(row, fmt.Sprint(b.Permanent), b.Codec, fmt.Sprint(b.Encrypted), b.SystemIdentifier, from, b.StartWALFile+".."+b.FinishWALFile)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}
