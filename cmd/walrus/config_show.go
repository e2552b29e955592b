package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/walrusdb/walrus/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration",
	}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show [--json]",
		Short: "Print the effective configuration, secrets masked",
		Long: `show prints every setting with the value walrus will use (file, then
WALRUS_* environment variables, then defaults) and the environment variable
that overrides it. Secrets print as ***.

--json prints {"source": FILE, "settings": [...]}, source "" without a
configuration file, one object per setting with the keys key, value (as
the file and the environment take it, secrets masked) and env.`,
		Example: `  walrus --config /etc/walrus.yaml config show
  WALRUS_COMPRESSION=zstd walrus config show
  walrus config show --json | jq -r '.settings[] | select(.key == "repo") | .value'`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(g.stdout, struct {
					Source   string           `json:"source"`
					Settings []config.Setting `json:"settings"`
				}{cfg.Source, cfg.Settings()})
			}
			fmt.Fprint(g.stdout, cfg.Redacted())
			return nil
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, `print {"source": ..., "settings": [...]} as JSON`)
	cmd.AddCommand(show)
	return cmd
}
