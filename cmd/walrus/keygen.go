package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/walrusdb/walrus/crypto"
)

type keygenOptions struct{ output string }

func newKeygenCmd(g *globals) *cobra.Command {
	var o keygenOptions
	cmd := &cobra.Command{
		Use:   "keygen --output FILE",
		Short: "Create an age identity for encrypting the repository",
		Long: `keygen writes a new age X25519 identity to FILE (mode 0600; an existing
file is never overwritten) and prints its recipient (age1...) on stdout.
Give the recipient to every host that pushes (encryption.recipients) and keep
the identity file for restores (encryption.identity_file), somewhere safer
than the database host.`,
		Example: `  walrus keygen --output /etc/walrus/age.key
  # then, in /etc/walrus.yaml:
  #   encryption:
  #     recipients: [age1...]
  #     identity_file: /etc/walrus/age.key`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output == "" {
				return usageError{fmt.Errorf("keygen: --output FILE is required")}
			}
			rcpt, err := crypto.WriteIdentityFile(o.output)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			fmt.Fprintln(g.stdout, rcpt)
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "file to write the identity to (must not exist)")
	return cmd
}
