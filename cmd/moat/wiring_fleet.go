package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/fleet"
	"github.com/moatsec/moat/internal/metrics"
)

// startFleet builds the fleet agent's client when fleet.server(s) is set
// (nil otherwise) and runs it with the daemon: the dispatcher pushes it
// each local alert's bans, and it holds the fleet's decisions through svc.
func (d *decisions) startFleet(m *daemon, svc *decision.Service) (*fleet.Client, error) {
	f := d.cfg.Fleet
	if !f.Enabled() {
		return nil, nil
	}
	pw := f.Password
	if f.PasswordFile != "" {
		b, err := os.ReadFile(f.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("fleet password_file: %w", err)
		}
		pw = strings.TrimSpace(string(b))
	}
	var key string
	if f.BouncerKeyFile != "" {
		b, err := os.ReadFile(f.BouncerKeyFile)
		if err != nil {
			return nil, fmt.Errorf("fleet bouncer_key_file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	hc, err := fleet.NewHTTPClient(f.CAFile, f.InsecureSkipVerify)
	if err != nil {
		return nil, err
	}
	log := m.log.With("component", "fleet")
	d.fleetMetrics = metrics.NewFleet()
	cl, err := fleet.New(fleet.Config{
		Servers: f.URLs(), MachineID: f.MachineID, Password: pw, BouncerKey: key, HTTP: hc,
		StateDir: d.cfg.StateDir, Applier: &fleet.ServiceApplier{Svc: svc},
		PushBatch: f.PushBatch, PushInterval: f.PushInterval, PollInterval: f.PollInterval,
		OnError: func(what string, err error) {
			log.Warn("fleet "+what+" failed; fleet bans held stay until they expire", "err", err)
		},
		OnConnect: func(up bool, server string, seq int64) {
			if up {
				log.Info("fleet stream connected", "server", server, "after", seq)
			} else {
				log.Info("fleet stream closed", "server", server, "at", seq)
			}
		},
		OnLag: d.fleetMetrics.ObserveLag,
	})
	if err != nil {
		return nil, err
	}
	d.fleet = cl
	d.fleetMetrics.SetSource(fleetStats{cl})
	m.services = append(m.services, cl.Run)
	log.Info("fleet agent role on", "servers", f.URLs(), "machine", f.MachineID)
	return cl, nil
}

// fleetStats copies the client's counters for the metrics.
type fleetStats struct{ c *fleet.Client }

func (f fleetStats) FleetStats() metrics.FleetStats {
	st := f.c.Stats()
	return metrics.FleetStats{
		Pushed: st.Pushed, PushErrors: st.PushErrors, Dropped: st.Dropped, Reconnects: st.Reconnects,
		Applied: st.Applied, Deleted: st.Deleted, Seq: st.Seq, Connected: st.Connected,
	}
}
