package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/wal-g/tracelog"

	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/repo"
)

// globals are the flags every command shares.
type globals struct {
	configPath string
	verbose    bool
	stdout     io.Writer
	stderr     io.Writer
	// armDeadline starts the running command's command_timeout clock;
	// set by withCommandTimeout.
	armDeadline func(time.Duration)
}

// load reads and validates the configuration.
func (g *globals) load() (*config.Config, error) {
	cfg, err := config.Load(g.configPath, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		tracelog.WarningLogger.Println(w)
	}
	if g.armDeadline != nil {
		g.armDeadline(cfg.CommandTimeout)
	}
	return cfg, nil
}

// openRepo loads the configuration and opens the repository.
func (g *globals) openRepo(ctx context.Context) (*config.Config, *repo.Repo, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	r, err := repo.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, r, nil
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "walrus",
		Short: "Physical backup and point-in-time recovery of PostgreSQL into S3 or a directory",
		Long: `walrus archives WAL (archive_command / restore_command), takes full and
page-delta base backups of a running cluster, and restores them to the
latest point, a time, an LSN or a named restore point.

Configuration comes from a YAML file (--config or WALRUS_CONFIG) and WALRUS_*
environment variables, which override the file. 'walrus config show' prints
the effective settings.`,
		Example: `  walrus keygen --output /etc/walrus/age.key
  WALRUS_REPO=/var/lib/walrus walrus wal-push pg_wal/000000010000000000000001
  archive_command = 'walrus --config /etc/walrus.yaml wal-push %p'
  restore_command = 'walrus --config /etc/walrus.yaml wal-fetch %f %p'`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			tracelog.InfoLogger = tracelog.NewErrorLogger(stderr, "INFO: ")
			tracelog.WarningLogger = tracelog.NewErrorLogger(stderr, "WARNING: ")
			tracelog.ErrorLogger = tracelog.NewErrorLogger(stderr, "ERROR: ")
			if g.verbose {
				tracelog.DebugLogger = tracelog.NewErrorLogger(stderr, "DEBUG: ")
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.configPath, "config", "", "configuration file (default $WALRUS_CONFIG)")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log debug details")
	root.AddCommand(
		newKeygenCmd(g),
		newConfigCmd(g),
		newWALPushCmd(g),
		newWALPushDaemonCmd(g),
		newWALFetchCmd(g),
		newWALPrefetchCmd(g),
		newCreateRestorePointCmd(g),
		newRestorePointListCmd(g),
		newBackupPushCmd(g),
		newBackupFetchCmd(g),
		newBackupListCmd(g),
		newBackupMarkCmd(g),
		newBackupVerifyCmd(g),
		newDeleteCmd(g),
		newLocksCmd(g),
		newUnlockCmd(g),
		newWALVerifyCmd(g),
		newSetupCmd(g),
		newCheckCmd(g),
	)
	withCommandTimeout(root, g)
	return root
}

// withCommandTimeout wraps the RunE of c and its subcommands so that the
// command's context ends when command_timeout has passed since the
// command loaded its configuration; the error then says so.
func withCommandTimeout(c *cobra.Command, g *globals) {
	for _, sub := range c.Commands() {
		withCommandTimeout(sub, g)
	}
	run := c.RunE
	if run == nil {
		return
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		ctx, cancel := context.WithCancelCause(cmd.Context())
		defer cancel(nil)
		var timer *time.Timer
		g.armDeadline = func(d time.Duration) {
			if d > 0 && timer == nil {
				timer = time.AfterFunc(d, func() { cancel(commandTimeoutError{d}) })
			}
		}
		defer func() {
			if timer != nil {
				timer.Stop()
			}
		}()
		cmd.SetContext(ctx)
		err := run(cmd, args)
		var te commandTimeoutError
		if err != nil && errors.As(context.Cause(ctx), &te) {
			err = fmt.Errorf("%w (%v)", err, te)
		}
		return err
	}
}

// commandTimeoutError is why a command's context ended at command_timeout.
type commandTimeoutError struct{ d time.Duration }

func (e commandTimeoutError) Error() string {
	return fmt.Sprintf("stopped by command_timeout after %v: raise command_timeout (WALRUS_COMMAND_TIMEOUT), or find out what is slow", e.d)
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d", cmd.CommandPath(), n, len(args))}
		}
		return nil
	}
}

// lockWaiting returns the repository lock options of a command that waits
// up to wait for a conflicting lock, saying once what it waits for.
func lockWaiting(command string, wait time.Duration) repo.LockOptions {
	return repo.LockOptions{Wait: wait, Waiting: func(h repo.LockInfo) {
		tracelog.InfoLogger.Printf("%s: waiting up to %s (lock_wait) for %s", command, wait, h)
	}}
}
