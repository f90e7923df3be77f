package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/community/client"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/metrics"
)

// startCommunity builds the community client when community.enabled is on
// (nil otherwise) and adds it to the daemon's services; OnBan hands it
// the local bans to share. Enabled without a registration is an error at
// start: moat community register is the only way in.
func (d *decisions) startCommunity(m *daemon, svc *decision.Service) (*client.Client, error) {
	cm := d.cfg.Community
	if !cm.Enabled || (!cm.Share && !cm.Pull) {
		return nil, nil
	}
	creds, err := client.LoadCredentials(d.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("community.enabled: %w", err)
	}
	hc, err := client.NewHTTPClient(cm.Proxy)
	if err != nil {
		return nil, err
	}
	log := m.log.With("component", "community")
	cl, err := client.New(client.Config{
		Credentials: creds, HTTP: hc, Decisions: svc, Share: cm.Share, Pull: cm.Pull, StateDir: d.cfg.StateDir,
		PushInterval: cm.PushInterval, PullInterval: cm.PullInterval, MaxPulled: cm.MaxDecisions,
		// The server filters the pulled list to the scenarios this
		// host runs, as CrowdSec's CAPI does.
		Scenarios: func() []string {
			var names []string
			for _, s := range m.engine.Stats().Scenarios.Scenarios {
				names = append(names, s.Name)
			}
			return names
		},
		OnError: func(what string, err error) {
			log.Warn("community "+what+" failed; retried with backoff", "err", err)
		},
	})
	if err != nil {
		return nil, err
	}
	m.services = append(m.services, cl.Run)
	d.communityMetrics = metrics.NewCommunityClient(communityClientMetrics{cl})
	log.Info("community exchange on", "server", creds.Server, "share", cm.Share, "pull", cm.Pull)
	return cl, nil
}

func (a *app) communityRegisterCmd() *cobra.Command {
	var srvURL, token, tokenFile, machineID string
	c := &cobra.Command{
		Use:   "register --server URL",
		Short: "Register this host with a community server; credentials go to the state directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if srvURL == "" {
				return usagef("--server URL is required")
			}
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return usagef("--token-file: %v", err)
				}
				token = strings.TrimSpace(string(b))
			}
			id, err := os.ReadFile(machineID)
			if err != nil {
				return fmt.Errorf("machine id: %w", err)
			}
			hc, err := client.NewHTTPClient(cfg.Community.Proxy)
			if err != nil {
				return usageError{err}
			}
			cr, err := client.LoadCredentials(cfg.StateDir)
			switch {
			case err == nil && cr.Server == strings.TrimRight(srvURL, "/") && token != "":
				// Registered, enrolment refused: retry it.
				if err := client.Enrol(cmd.Context(), hc, cr, token); err != nil {
					return err
				}
			case err == nil:
				return usagef("already registered with %s: run moat community unregister first", cr.Server)
			default:
				cr, err = client.Register(cmd.Context(), hc, srvURL, token, id, cfg.StateDir)
				if err != nil && cr.MachineID != "" {
					return fmt.Errorf("%w (registered; run this again with the right --token)", err)
				}
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(a.stdout, "registered with %s as %s; set community.enabled, share and pull in %s, then reload moat\n", cr.Server, cr.MachineID, a.configPath)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&srvURL, "server", "", "community server URL (https://...)")
	fl.StringVar(&token, "token", "", "the server's enrolment token")
	fl.StringVar(&tokenFile, "token-file", "", "file holding the server's enrolment token")
	fl.StringVar(&machineID, "machine-id", "/etc/machine-id", "file the pseudonym is derived from (never sent)")
	return c
}

func (a *app) communityStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the registration and whether the server accepts this host",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			hc, err := client.NewHTTPClient(cfg.Community.Proxy)
			if err != nil {
				return usageError{err}
			}
			cm := cfg.Community
			cr, err := client.Status(cmd.Context(), hc, cfg.StateDir)
			if errors.Is(err, client.ErrNotRegistered) {
				fmt.Fprintf(a.stdout, "not registered (enabled %v, share %v, pull %v)\n", cm.Enabled, cm.Share, cm.Pull)
				return nil
			}
			queued, _ := client.Queued(cfg.StateDir)
			fmt.Fprintf(a.stdout, "server %s, machine %s, enabled %v, share %v, pull %v, signals queued %d\n", cr.Server, cr.MachineID, cm.Enabled, cm.Share, cm.Pull, queued)
			if err != nil {
				return fmt.Errorf("the server refuses this host: %w", err)
			}
			fmt.Fprintln(a.stdout, "the server accepts this host's signals and pulls")
			return nil
		},
	}
}

func (a *app) communityUnregisterCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unregister",
		Short: "Forget the community credentials and queued signals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			cr, err := client.LoadCredentials(cfg.StateDir)
			if err != nil {
				return err
			}
			hc, err := client.NewHTTPClient(cfg.Community.Proxy)
			if err != nil {
				return usageError{err}
			}
			// Best effort: a server that is gone must not keep the
			// credentials here.
			if err := client.Leave(cmd.Context(), hc, cr); err != nil {
				fmt.Fprintf(a.stderr, "moat: %s; forgetting the credentials here anyway\n", esc(err.Error()))
			}
			if err := client.Unregister(cfg.StateDir); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "unregistered; pulled community decisions expire on their own (moat decisions delete --origin community removes them now)")
			return nil
		},
	}
}
