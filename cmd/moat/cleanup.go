package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/xdp"
)

func (a *app) cleanupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Remove everything moat put in the kernel: its nftables table, XDP programs and pins",
		Long: `Removes table inet moat (and moat's netdev table), detaches moat's XDP
programs and removes its pins under the configured pin directory. Nothing
else is touched. Bans stay in moat's store: the next start enforces them again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			// Both are removed whatever the configuration enables now: an
			// earlier configuration may have enabled the other one.
			errNFT := nft.Cleanup(cmd.Context(), nftConfig(cfg))
			errXDP := xdp.Cleanup(cfg.Enforce.XDP.PinDir)
			if err := errors.Join(errNFT, errXDP); err != nil {
				return fmt.Errorf("cleanup: %w", err)
			}
			fmt.Fprintln(a.stdout, "moat: removed table inet moat and the XDP pins under", cfg.Enforce.XDP.PinDir)
			return nil
		},
	}
}
