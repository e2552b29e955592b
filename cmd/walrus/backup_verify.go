package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/walrusdb/walrus/internal/progress"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walrusdb/walrus/catalog"
)

type backupVerifyOptions struct {
	all  bool
	json bool
}

func (o *backupVerifyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.all, "all", false, "verify every backup in the repository")
	fs.BoolVar(&o.json, "json", false, `print {"ok", "backups": [{"name", "ok", "chain", "parts", "files", "bytes", "first_wal", "last_wal", "problems": [...]}]} as JSON`)
}

func newBackupVerifyCmd(g *globals) *cobra.Command {
	var o backupVerifyOptions
	cmd := &cobra.Command{
		Use:   "backup-verify NAME...|LATEST|--all [--json]",
		Short: "Read a backup and its chain back and check every byte against its manifest",
		Long: `backup-verify reads every object of the backup (NAME, the newest with LATEST,
or every backup with --all) and of its delta chain, as a restore would, and
writes nothing: each part must be present with its recorded size, decrypt,
decompress, and match its recorded plaintext size and SHA-256; its tar
entries must be exactly the files the manifest places in it; each file must
have its recorded size and CRC-32C; each increment must parse (header, block
list, pages, checksums) and match its manifest entry; pg_control must belong
to the backup's cluster. Every file of the backup must be restorable from the
chain's manifests. The WAL from the backup's start to its finish, which a
restore needs to become consistent, must be archived, each file once. On an
encrypted repository each manifest must match its authenticator (the
manifest's SHA-256 that backup-push wrote encrypted beside it); a missing
authenticator is a problem too.

Each problem is named: the backup (or link of the chain) it is in, the part
and its object key, the file, the increment's block where one is at fault,
the WAL file. One damaged part does not hide another. The exit status is 0
only when every backup verified is intact; 1 otherwise. Parts are read
download_concurrency at a time, streamed; an encrypted repository needs
encryption.identity_file. A part shared by several chains (--all) is read
once.`,
		Example: `  walrus backup-verify LATEST
  walrus backup-verify base_20261121T193012Z_000000010000000000000004
  walrus --config /etc/walrus.yaml backup-verify --all
  walrus backup-verify --all --json | jq -r '.backups[] | select(.ok | not) | .name'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.all == (len(args) > 0) {
				return usageError{fmt.Errorf("backup-verify takes backup names (or LATEST), or --all")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackupVerify(cmd, g, o, args)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runBackupVerify(cmd *cobra.Command, g *globals, o backupVerifyOptions, names []string) error {
	ctx := cmd.Context()
	for _, n := range names {
		if n != catalog.Latest {
			if err := catalog.ValidateName(n); err != nil {
				return usageError{err}
			}
		}
	}
	cfg, r, err := g.openRepo(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	opts := catalog.VerifyOptions{Store: r.Store, Decoder: r.Decoder, Concurrency: cfg.DownloadConcurrency}
	if f, ok := g.stderr.(*os.File); ok && progress.IsTerminal(f) && !o.json {
		opts.Progress = f
	}
	rep, err := catalog.VerifyBackups(ctx, opts, names)
	if err != nil {
		return fmt.Errorf("backup-verify: %w", err)
	}
	if o.json {
		if err := writeJSON(g.stdout, rep); err != nil {
			return err
		}
	} else {
		printVerifyReport(g.stdout, rep)
	}
	if rep.OK {
		return nil
	}
	var bad []string
	for _, b := range rep.Backups {
		if !b.OK {
			bad = append(bad, b.Name)
		}
	}
	return withExit(exitFailure, fmt.Errorf("backup-verify: %d of %d backup(s) cannot be restored as they are: %s; "+
		"restore another backup, and take a new one (walrus backup-push --full) so that a restore does not depend on the damage",
		len(bad), len(rep.Backups), strings.Join(bad, ", ")))
}

// printVerifyReport writes one line per backup and one per problem.
func printVerifyReport(w io.Writer, rep *catalog.VerifyReport) {
	for _, b := range rep.Backups {
		what := b.Kind
		if len(b.Chain) > 1 {
			what += ", chain " + strings.Join(b.Chain, " <- ")
		}
		state := "OK"
		if !b.OK {
			state = fmt.Sprintf("FAILED (%d problem(s))", len(b.Problems))
		}
		wal := ""
		if b.FirstWAL != "" {
			wal = fmt.Sprintf("; WAL %s .. %s", b.FirstWAL, b.LastWAL)
		}
		fmt.Fprintf(w, "backup %s (%s): %s: %d part(s), %d file(s), %s read%s\n", b.Name, what, state, b.Parts, b.Files, sizeString(b.Bytes), wal)
		for _, p := range b.Problems {
			fmt.Fprintln(w, "  PROBLEM "+p.String())
		}
	}
}
