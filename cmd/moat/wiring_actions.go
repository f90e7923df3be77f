package main

import (
	"github.com/moatsec/moat/enforce/action"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/metrics"
	"github.com/moatsec/moat/internal/model"
)

// startActions builds the actions of moat.yaml and has the service tell
// them of each ban once the kernel holds it and of each unban; they run as
// a daemon service, off the ban path.
func (d *decisions) startActions(m *daemon, svc *decision.Service) error {
	a, err := action.FromConfig(&d.cfg)
	if err != nil {
		return err
	}
	d.actions = a
	if a.Len() == 0 {
		return nil
	}
	a.OnError = func(name string, ev action.Event, err error) {
		d.log.Warn("action failed; the ban is not affected", "action", name, "event", ev.Event, "value", ev.Value, "err", err)
	}
	svc.Enforced = a.Enforced
	m.services = append(m.services, a.Run)
	return nil
}

// restoring passes the decisions loaded at start to load and then, once
// the kernel holds them, to the actions that run for restored bans.
func (d *decisions) restoring(load func([]model.Decision) error) func([]model.Decision) error {
	return func(ds []model.Decision) error {
		if err := load(ds); err != nil {
			return err
		}
		if d.actions.Len() == 0 {
			return nil
		}
		var enforced []model.Decision
		for _, x := range ds {
			if !x.Simulated {
				enforced = append(enforced, x)
			}
		}
		d.actions.Restored(enforced)
		return nil
	}
}

// actionMetrics copies the actions' counters for the metrics server.
type actionMetrics struct{ m *action.Manager }

func (a actionMetrics) ActionStats() []metrics.ActionStat {
	var out []metrics.ActionStat
	for _, s := range a.m.Stats() {
		st := metrics.ActionStat{Name: s.Name, Exits: s.Exits, Dropped: s.Dropped, Queued: s.Queued, Seconds: s.Seconds, Runs: map[string]uint64{}}
		for r, n := range s.Runs {
			st.Runs[string(r)] = n
		}
		out = append(out, st)
	}
	return out
}
