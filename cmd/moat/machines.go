package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// openServer opens server.listen, over TLS when configured, with the
// other listeners: before the kernel is touched.
func (l *listeners) openServer(sv config.Server) error {
	if !sv.Enabled || sv.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", sv.Listen)
	if err != nil {
		return fmt.Errorf("server listen: %w", err)
	}
	if sv.TLS.Cert != "" {
		tc, err := api.ServerTLS(sv.TLS.Cert, sv.TLS.Key, sv.TLS.ClientCA)
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, tc)
	}
	l.server = ln
	return nil
}

// enableMachines turns the server role on in srv and serves server.listen
// when it has a listener of its own.
func (d *decisions) enableMachines(srv *api.Server, m *daemon) error {
	sv := d.cfg.Server
	if !sv.Enabled {
		return nil
	}
	var enrol string
	if sv.EnrolmentTokenFile != "" {
		b, err := os.ReadFile(sv.EnrolmentTokenFile)
		if err != nil {
			return fmt.Errorf("server enrolment_token_file: %w", err)
		}
		if enrol = strings.TrimSpace(string(b)); len(enrol) < 16 {
			return fmt.Errorf("server enrolment_token_file %s: want a token of at least 16 characters", sv.EnrolmentTokenFile)
		}
	}
	if err := srv.EnableMachines(api.MachineConfig{
		Store: d.store, TokenLifetime: sv.JWTLifetime, EnrolmentToken: enrol, Simulated: d.cfg.Simulation,
		OnAlert: func(machine string, id int64, a model.Alert, ds []model.Decision) {
			d.log.Info("machine alert", "machine", machine, "alert", id, "scenario", a.Scenario, "source", a.Value, "decisions", len(ds))
			for _, dec := range ds {
				d.log.Info("ban", "value", dec.Value, "scenario", a.Scenario, "origin", dec.Origin, "until", dec.Until.Format(time.RFC3339), "machine", machine, "simulated", dec.Simulated)
			}
		},
	}); err != nil {
		return err
	}
	if ln := d.lis.server; ln != nil {
		m.services = append(m.services, func(ctx context.Context) error { return srv.Serve(ctx, ln, srv.MachineHandler()) })
	}
	d.log.Info("fleet server role on", "listen", sv.Listen, "tls", sv.TLS.Cert != "", "mutual_tls", sv.TLS.ClientCA != "", "enrolment_token", enrol != "")
	return nil
}

// apiListenHandler is what api.listen serves: the bouncer endpoints, and
// the machine endpoints beside them when the server role is on without a
// listener of its own.
func (d *decisions) apiListenHandler(srv *api.Server) http.Handler {
	if d.cfg.Server.Enabled && d.lis.server == nil {
		return srv.MachineHandler()
	}
	return srv.BouncerHandler()
}

func (a *app) machinesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "machines",
		Aliases: []string{"machine"},
		Short:   "Manage the CrowdSec agents (machines) of the fleet server role",
		Args:    cobra.NoArgs,
	}
	cmd.AddCommand(a.machinesListCmd(), a.machinesAddCmd(), a.machinesApproveCmd(), a.machinesDeleteCmd())
	return cmd
}

var machineListing = listing[api.Machine]{
	columns: []column[api.Machine]{
		{"MACHINE", func(m api.Machine) string { return m.ID }},
		{"APPROVED", func(m api.Machine) string { return map[bool]string{true: "yes", false: "NO"}[m.Approved] }},
		{"CREATED", func(m api.Machine) string { return fmtTime(m.CreatedAt) }},
		{"LAST LOGIN", func(m api.Machine) string { return fmtTime(m.LastLogin) }},
		{"LAST HEARTBEAT", func(m api.Machine) string { return fmtTime(m.LastHeartbeat) }},
		{"IP", func(m api.Machine) string { return orDash(m.IP) }},
		{"VERSION", func(m api.Machine) string { return orDash(m.Version) }},
	},
	raw:   func(m api.Machine) string { return m.ID },
	empty: "No machines.",
}

func (a *app) machinesListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registered machines, approved or waiting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			ms, err := c.Machines(cmd.Context())
			if err != nil {
				return adminError(err)
			}
			return machineListing.render(a.stdout, format, ms)
		},
	}
}

func (a *app) machinesAddCmd() *cobra.Command {
	var password string
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Register a machine, approved, and print its password",
		Long: `Register a machine, approved. Without --password a random one is made and
printed this once (-o raw prints it alone); put it with the server's URL in
the agent's local_api_credentials.yaml (login: NAME).`,
		Args: oneName("add"),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := a.outputFormat("table")
			if err != nil {
				return err
			}
			if password == "" {
				raw := make([]byte, 24)
				if _, err := rand.Read(raw); err != nil {
					return fmt.Errorf("machine password: %w", err)
				}
				password = hex.EncodeToString(raw)
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			mc, err := c.AddMachine(cmd.Context(), args[0], password)
			if err != nil {
				return adminError(err)
			}
			out := struct {
				api.Machine
				Password string `json:"password"`
			}{mc, password}
			return result{value: out, raw: []string{password}, text: func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Machine %q registered and approved. Password:\n\n    %s\n\nKeep it now: it will not be shown again.\n", esc(mc.ID), password)
				return err
			}}.render(a.stdout, format)
		},
	}
	cmd.Flags().StringVar(&password, "password", "", "the machine's password (default: a random one)")
	return cmd
}

func (a *app) machinesApproveCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "approve NAME",
		Aliases: []string{"validate"},
		Short:   "Let a machine that registered itself log in and push alerts",
		Args:    oneName("approve"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			mc, err := c.ApproveMachine(cmd.Context(), args[0])
			if err != nil {
				return adminError(err)
			}
			return result{value: mc, raw: []string{mc.ID}, text: func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Machine %q approved.\n", esc(mc.ID))
				return err
			}}.render(a.stdout, format)
		},
	}
}

func (a *app) machinesDeleteCmd() *cobra.Command {
	return a.deleteNamedCmd("Machine", "Delete a machine; its tokens stop working at once", (*api.Client).DeleteMachine)
}
