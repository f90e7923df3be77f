package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func (a *app) replayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "replay FILE...",
		Short: "Replay cold logs and print the alerts they raise",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return errors.New("replay: being wired")
		},
	}
}
