package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/api"
)

// lapiDecision is a decision of CrowdSec's bouncer stream.
type lapiDecision struct {
	ID       int64  `json:"id"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
	Scope    string `json:"scope"`
	Type     string `json:"type"`
	Value    string `json:"value"`
	// Simulated decisions are left out, as the fleet stream leaves them.
	Simulated bool `json:"simulated"`
}

type lapiStream struct {
	New     []lapiDecision `json:"new"`
	Deleted []lapiDecision `json:"deleted"`
}

// toAPI converts d; durations may be negative (expired) or in CrowdSec's
// forms, which time.ParseDuration reads but for days (never in a stream).
func (d lapiDecision) toAPI(now time.Time) (api.FleetDecision, bool) {
	switch strings.ToLower(d.Scope) {
	case "ip", "range":
	default:
		return api.FleetDecision{}, false
	}
	dur, err := time.ParseDuration(d.Duration)
	if err != nil {
		return api.FleetDecision{}, false
	}
	return api.FleetDecision{ID: d.ID, Value: d.Value, Type: d.Type, Scenario: d.Scenario, Until: now.Add(dur), Simulated: d.Simulated}, true
}

// pollLoop polls the bouncer stream of a server without a fleet stream
// until ctx ends: a startup pull (the whole active set, which replaces
// what is held) and then the changes every PollInterval. CrowdSec keeps
// the bouncer's position on its side, so nothing is saved here.
func (c *Client) pollLoop(ctx context.Context, h *held) {
	bo := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	startup := true
	for {
		err := c.pollOnce(ctx, h, startup)
		wait := c.cfg.PollInterval
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.report("poll bouncer stream", err)
			wait = max(wait, bo.next())
			// CrowdSec may have moved the bouncer's position past
			// changes not applied: the next pull is a whole one.
			startup = true
		} else {
			startup = false
			bo.reset()
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

func (c *Client) pollOnce(ctx context.Context, h *held, startup bool) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// A CrowdSec LAPI has no replicas sharing a position here: the
	// bouncer's position is the LAPI's, so the poll stays on one server.
	_, base := c.server()
	url := base + "/v1/decisions/stream?scopes=ip,range"
	if startup {
		url += "&startup=true"
	}
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Api-Key", c.cfg.BouncerKey)
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return readStatus(resp)
	}
	var s lapiStream
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(&s); err != nil {
		return fmt.Errorf("bouncer stream: %w", err)
	}
	clear(h.seen)
	now := time.Now()
	conv := func(ls []lapiDecision) []api.FleetDecision {
		out := make([]api.FleetDecision, 0, len(ls))
		for _, l := range ls {
			if d, ok := l.toAPI(now); ok {
				out = append(out, d)
			}
		}
		return out
	}
	if err := c.applyNew(ctx, h, conv(s.New), time.Time{}); err != nil {
		return err
	}
	if err := c.applyDeleted(ctx, h, conv(s.Deleted)); err != nil {
		return err
	}
	if startup {
		if err := c.dropUnseen(ctx, h); err != nil {
			return err
		}
	}
	clear(h.seen)
	return nil
}
