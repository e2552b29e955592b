package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walrusdb/walrus/setup"
)

type setupOptions struct {
	pgdata       string
	repo         string
	compression  string
	encrypt      bool
	recipients   []string
	identityFile string
}

func (o *setupOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.pgdata, "pgdata", "", "the cluster's data directory (default $PGDATA)")
	fs.StringVar(&o.repo, "repo", "", "repository of a new configuration: file:///path, /path or s3://bucket/prefix")
	fs.StringVar(&o.compression, "compression", "", "codec of a new configuration: lz4 (default), zstd, brotli, lzma or none")
	fs.BoolVar(&o.encrypt, "encrypt", false, "encrypt; without --recipient or --identity-file, generate an age identity next to the configuration")
	fs.StringArrayVar(&o.recipients, "recipient", nil, "age recipient (age1...) to encrypt to; repeat for several")
	fs.StringVar(&o.identityFile, "identity-file", "", "existing age identity file for restores (encryption.identity_file)")
}

func newSetupCmd(g *globals) *cobra.Command {
	var o setupOptions
	cmd := &cobra.Command{
		Use:   "setup --pgdata DIR [--repo URL]",
		Short: "Write the walrus configuration and configure PostgreSQL to archive through walrus",
		Long: `setup prepares a cluster for walrus, asking nothing:

1. If the configuration file (--config, else $WALRUS_CONFIG, else
   walrus-<name>.yaml next to the data directory, e.g.
   /var/lib/postgresql/15/walrus-main.yaml) does not exist, it writes it,
   mode 0600, owned by the data directory's owner (archive_command runs as
   that user and reads it): the flags, then WALRUS_* environment variables,
   give its settings; defaults are left out. With --encrypt and neither
   --recipient nor --identity-file, it generates an age identity next to
   the file (walrus-<name>.age.key) and prints where: copy it somewhere
   safe, without it nothing can be restored. An existing file is left as
   it is. A new directory repository is created, owned by that user.

2. It configures PostgreSQL: archive_mode = on (always is kept), wal_level
   at least replica (logical is kept), archive_command and
   restore_command running this walrus binary with that configuration
   ('<walrus> --config <file> wal-push %p', '... wal-fetch %f %p').
   When the server runs (postmaster.pid names a live process) it uses
   ALTER SYSTEM over a connection (postgres.dsn or the PG* variables,
   as a superuser) and reloads the configuration; archive_mode and
   wal_level then need a restart, which it says. When the server is
   stopped it edits postgresql.auto.conf; the settings apply at start.

It prints each change (old → new) and what needs a reload or a restart.
Running it again changes nothing and says so. Then run walrus check.`,
		Example: `  # as root, cluster stopped or running:
  walrus setup --pgdata /var/lib/postgresql/15/main --repo s3://backups/db1 --encrypt
  walrus --config /etc/walrus/db1.yaml setup --pgdata /srv/pg/db1 --repo /srv/walrus/db1
  walrus --config /etc/walrus/db1.yaml check`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSetup(cmd, g, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runSetup(cmd *cobra.Command, g *globals, o setupOptions) error {
	bin, err := thisBinary()
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	pgdata := o.pgdata
	for _, env := range []string{"WALRUS_PGDATA", "PGDATA"} {
		if pgdata == "" {
			pgdata = os.Getenv(env)
		}
	}
	configPath := g.configPath
	if configPath == "" {
		configPath = os.Getenv("WALRUS_CONFIG")
	}
	res, err := setup.Run(cmd.Context(), setup.Options{
		PGData:       pgdata,
		ConfigPath:   configPath,
		Binary:       bin,
		Repo:         o.repo,
		Compression:  o.compression,
		Recipients:   o.recipients,
		IdentityFile: o.identityFile,
		Encrypt:      o.encrypt,
		Lookup:       os.LookupEnv,
	})
	var ue setup.UsageError
	if errors.As(err, &ue) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	res.Print(g.stdout)
	return nil
}

// thisBinary is the absolute path of the running walrus, symbolic links
// resolved: what archive_command should run.
func thisBinary() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the walrus binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the walrus binary: %w", err)
	}
	return filepath.Abs(exe)
}
