package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
)

// adminClient returns a client for the daemon's socket from the config.
func (a *app) adminClient(cmd *cobra.Command) (*api.Client, error) {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	if cfg.API.Socket == "" {
		return nil, usagef("api.socket is empty in %s: the CLI has no daemon to talk to", cfg.Source)
	}
	return api.NewClient(cfg.API.Socket), nil
}

// adminCall is the preamble of the commands that talk to the daemon: the
// output format (JSON unless on a terminal) and the client.
func (a *app) adminCall(cmd *cobra.Command) (*api.Client, string, error) {
	format, err := a.outputFormat("json")
	if err != nil {
		return nil, "", err
	}
	c, err := a.adminClient(cmd)
	return c, format, err
}

// adminError makes the daemon's answers to bad input usage errors (exit
// code 2); everything else stays a runtime failure.
func adminError(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == 400 {
		return usageError{errors.New(ae.Message)}
	}
	if errors.As(err, &ae) {
		return errors.New(ae.Message)
	}
	return err
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// remaining is the time left until t, to the second.
func remaining(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(now).Round(time.Second)
	if d <= 0 {
		return "expired"
	}
	return d.String()
}
