package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walrusdb/walrus/setup"
)

type checkOptions struct{ timeout time.Duration }

func (o *checkOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the repository and for the switched WAL segment to arrive")
}

func newCheckCmd(g *globals) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Verify end to end that archiving into the repository works",
		Long: `check verifies, in order, and prints one line per step:

  configuration    the configuration loads
  encryption       the identity file (if any) decrypts what the recipients encrypt
  repository       the repository is reachable and writable: an object is
                   written under check/, read back and deleted; walrus.json
                   matches the encryption setting and the cluster
  locks            backup-push, backup-mark or delete running (their
                   repository locks), and stale locks of killed commands
  server           walrus connects (postgres.dsn or PG* variables)
  archive_mode     on or always, wal_level replica or logical
  archive_command  runs walrus wal-push with a configuration naming the
                   same repository (warns when it runs another binary)
  WAL switch       when nothing failed: pg_switch_wal(), then waits (at
                   most --timeout) until that segment is in the repository

Each failure comes with its fix. It changes no setting. The exit status is
0 only when nothing failed; warnings do not count.`,
		Example: `  walrus --config /var/lib/postgresql/15/walrus-main.yaml check
  walrus check --timeout 5m`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd, g, o)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runCheck(cmd *cobra.Command, g *globals, o checkOptions) error {
	bin, err := thisBinary()
	if err != nil {
		bin = ""
	}
	res := setup.Check(cmd.Context(), setup.CheckOptions{
		ConfigPath: g.configPath,
		Lookup:     os.LookupEnv,
		Binary:     bin,
		Timeout:    o.timeout,
		Report: func(f setup.Finding) {
			fmt.Fprintf(g.stdout, "%-4s  %-15s  %s\n", f.Status, f.Step, f.Message)
			if f.Fix != "" && (f.Status == setup.StatusFail || f.Status == setup.StatusWarn) {
				fmt.Fprintf(g.stdout, "      %-15s  fix: %s\n", "", f.Fix)
			}
		},
	})
	if n := res.Failures(); n > 0 {
		fmt.Fprintf(g.stdout, "check FAILED: %d problem(s), %d warning(s)\n", n, res.Warnings())
		return withExit(exitFailure, fmt.Errorf("check: %d problem(s): fix them as shown above, then run walrus check again", n))
	}
	fmt.Fprintf(g.stdout, "check passed: archiving into the repository works (%d warning(s))\n", res.Warnings())
	return nil
}
