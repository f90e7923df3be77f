package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: read logs, detect attacks, ban in the kernel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("run: the daemon is being wired")
		},
	}
}

func (a *app) replayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "replay FILE...",
		Short: "Replay cold logs and print the alerts they raise",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("replay: being wired")
		},
	}
}

func checkContent(_ any) error { return nil }
