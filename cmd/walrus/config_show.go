package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration, secrets masked",
		Long: `show prints every setting with the value walrus will use (file, then
WALRUS_* environment variables, then defaults) and the environment variable
that overrides it. Secrets print as ***.`,
		Example: `  walrus --config /etc/walrus.yaml config show
  WALRUS_COMPRESSION=zstd walrus config show`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			fmt.Fprint(g.stdout, cfg.Redacted())
			return nil
		},
	})
	return cmd
}
