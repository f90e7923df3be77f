package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and the hub content, and print the effective configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			if err := checkContent(cfg, a.stderr); err != nil {
				return err
			}
			// The output ends up in tickets and chat: secrets stay out.
			out, err := cfg.Redact()
			if err != nil {
				return err
			}
			src := cfg.Source
			if src == "" {
				src = "built-in default"
			}
			fmt.Fprintf(a.stdout, "# effective configuration (from %s; secrets redacted)\n%s", src, out)
			return nil
		},
	})
	return cmd
}
