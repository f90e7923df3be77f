package decision

import (
	"context"
	"fmt"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// AddAlert handles an alert a CrowdSec agent (a machine) pushed to the
// fleet server and returns the stored alert's ID with the decisions taken.
// ds are the decisions the alert carries (a cscli decision on the machine);
// when it carries none, the profiles decide as for a local alert, as
// CrowdSec's LAPI runs its profiles on a machine's alerts, and their
// decisions take origin.
//
// The order is Add's, not Enforce's: the machine is acknowledged, so the
// alert and its decisions are committed before the kernel is told and an
// acknowledged decision is never lost. Decisions on allowlisted or
// protected sources are dropped (and counted) rather than failing the
// push, which a machine would otherwise retry forever; the alert is stored
// either way, as its record.
func (s *Service) AddAlert(ctx context.Context, a model.Alert, ds []model.Decision, origin model.Origin) (int64, []model.Decision, error) {
	now := time.Now()
	for i := range ds {
		if err := Validate(&ds[i], now); err != nil {
			return 0, nil, fmt.Errorf("alert %s %s: decision %s: %w", a.Scenario, a.Value, ds[i].Value, err)
		}
	}
	s.count(func() { s.stats.alerts++ })
	if len(ds) == 0 {
		dup, err := s.duplicate(ctx, a, now)
		if err != nil {
			return 0, nil, fmt.Errorf("alert %s %s: %w", a.Scenario, a.Value, err)
		}
		switch {
		case dup:
			s.count(func() { s.stats.duplicates++ })
		case a.Source.IsValid() && s.Allowlisted(a.Source):
			s.count(func() { s.stats.allowlisted++ })
		default:
			out, err := s.profiles.Decide(ctx, a, s.st, now)
			if err != nil {
				return 0, nil, fmt.Errorf("alert %s %s: %w", a.Scenario, a.Value, err)
			}
			if s.Observe != nil {
				s.Observe(a, out)
			}
			ds = out.Decisions
			for i := range ds {
				ds[i].Origin = origin
			}
		}
	}
	kept := ds[:0:0]
	for _, d := range ds {
		if s.Allowlisted(d.Value) {
			s.count(func() { s.stats.allowlisted++ })
			continue
		}
		if s.protect(d.Value) != nil {
			continue
		}
		kept = append(kept, d)
	}
	id, err := s.st.InsertAlert(ctx, a, kept)
	if err != nil {
		return 0, nil, err
	}
	s.count(func() { s.stats.decisions += int64(len(kept)) })
	if add := enforceable(kept); len(add) > 0 && s.enf != nil {
		if err := s.enf.Apply(ctx, add, nil); err != nil {
			return id, kept, fmt.Errorf("alert %d stored but its decisions not enforced: %w", id, err)
		}
	}
	return id, kept, nil
}
