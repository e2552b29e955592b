package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/walrusdb/walrus/setup"
)

type checkOptions struct {
	timeout time.Duration
	json    bool
}

func (o *checkOptions) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the repository and for the switched WAL segment to arrive")
	fs.BoolVar(&o.json, "json", false, `print {"passed": ..., "findings": [...]} as JSON once every step ran`)
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
0 only when nothing failed; warnings do not count.

--json prints, once every step ran, {"passed": true|false, "failures": N,
"warnings": N, "findings": [...]}, one object per step with the keys step,
status (ok, warn, fail or skip), message and fix; the exit status is the
same.`,
		Example: `  walrus --config /var/lib/postgresql/15/walrus-main.yaml check
  walrus check --timeout 5m
  walrus check --json | jq -r '.findings[] | select(.status == "fail") | .fix'`,
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
			if o.json {
				return
			}
			fmt.Fprintf(g.stdout, "%-4s  %-15s  %s\n", f.Status, f.Step, f.Message)
			if f.Fix != "" && (f.Status == setup.StatusFail || f.Status == setup.StatusWarn) {
				fmt.Fprintf(g.stdout, "      %-15s  fix: %s\n", "", f.Fix)
			}
		},
	})
	if o.json {
		if err := writeCheckJSON(g.stdout, res); err != nil {
			return err
		}
	}
	if n := res.Failures(); n > 0 {
		if o.json {
			return withExit(exitFailure, fmt.Errorf("check: %d problem(s): fix them as the findings' fix says, then run walrus check again", n))
		}
		fmt.Fprintf(g.stdout, "check FAILED: %d problem(s), %d warning(s)\n", n, res.Warnings())
		return withExit(exitFailure, fmt.Errorf("check: %d problem(s): fix them as shown above, then run walrus check again", n))
	}
	if !o.json {
		fmt.Fprintf(g.stdout, "check passed: archiving into the repository works (%d warning(s))\n", res.Warnings())
	}
	return nil
}

// findingJSON is one finding in check --json.
type findingJSON struct {
	Step    string `json:"step"`
	Status  string `json:"status"` // ok, warn, fail, skip
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// writeCheckJSON writes the outcome of check as check --json prints it.
func writeCheckJSON(w io.Writer, res *setup.CheckResult) error {
	findings := []findingJSON{}
	for _, f := range res.Findings {
		findings = append(findings, findingJSON{Step: f.Step, Status: strings.ToLower(f.Status.String()), Message: f.Message, Fix: f.Fix})
	}
	return writeJSON(w, struct {
		Passed   bool          `json:"passed"`
		Failures int           `json:"failures"`
		Warnings int           `json:"warnings"`
		Findings []findingJSON `json:"findings"`
	}{res.Failures() == 0, res.Failures(), res.Warnings(), findings})
}
