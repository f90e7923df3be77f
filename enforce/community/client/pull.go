package client

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/community/wire"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

func (c *Client) pullLoop(ctx context.Context) {
	startup, wait := true, time.Duration(0)
	for sleep(ctx, wait) {
		if err := c.Pull(ctx, startup); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.fail("pull", err)
			wait = min(c.cfg.PullInterval, c.backoff(wait))
			continue
		}
		startup, wait = false, c.cfg.PullInterval
	}
}

// PullResult is what one pull changed.
type PullResult struct {
	Added, Deleted, Refused int
}

// Pull pulls the list: with startup, the whole list replaces the
// community decisions held; otherwise the changes since the last pull are
// applied. Allowlisted and non-public addresses are refused before they
// reach the decision service, and at most MaxPulled are held.
func (c *Client) Pull(ctx context.Context, startup bool) error {
	_, err := c.pull(ctx, startup)
	return err
}

func (c *Client) pull(ctx context.Context, startup bool) (PullResult, error) {
	var s wire.StreamV3
	path := "/v3/decisions/stream"
	if startup {
		path += "?startup=true"
	}
	if err := c.authed(ctx, "GET", path, nil, &s); err != nil {
		return PullResult{}, err
	}
	now := c.cfg.Now()
	var res PullResult
	var del []string
	for _, g := range s.Deleted {
		if strings.EqualFold(g.Scope, "ip") {
			del = append(del, g.Decisions...)
		}
	}
	if startup {
		// The whole list replaces what was held, so an address that left
		// the list while this host was down does not stay banned.
		if _, err := c.cfg.Decisions.Delete(ctx, store.Filter{Origin: string(model.OriginCommunity)}); err != nil {
			return res, fmt.Errorf("pull: replace the community decisions: %w", err)
		}
		c.held.Store(0)
	}
	for _, v := range del {
		gone, err := c.cfg.Decisions.Delete(ctx, store.Filter{Value: v, Origin: string(model.OriginCommunity)})
		if err != nil {
			return res, fmt.Errorf("pull: delete %s: %w", v, err)
		}
		res.Deleted += len(gone)
		c.held.Add(-int64(len(gone)))
	}
	var add []model.Decision
	for _, g := range s.New {
		if !strings.EqualFold(g.Scope, "ip") {
			continue
		}
		for _, d := range g.Decisions {
			dec, ok := c.decision(g.Scenario, d, now)
			if !ok {
				res.Refused++
				continue
			}
			add = append(add, dec)
		}
	}
	if !startup && len(add) > 0 {
		// A refreshed address comes again as new: its old decision
		// goes, so one address holds one community decision.
		for _, d := range add {
			gone, err := c.cfg.Decisions.Delete(ctx, store.Filter{Value: d.Value.Addr().String(), Origin: string(model.OriginCommunity)})
			if err != nil {
				return res, fmt.Errorf("pull: refresh %s: %w", d.Value, err)
			}
			c.held.Add(-int64(len(gone)))
		}
	}
	if room := int64(c.cfg.MaxPulled) - c.held.Load(); int64(len(add)) > room {
		res.Refused += len(add) - int(max(0, room))
		add = add[:max(0, room)]
	}
	n, refused, err := c.add(ctx, add)
	res.Added, res.Refused = n, res.Refused+refused
	c.held.Add(int64(n))
	c.pulled.Add(int64(n))
	c.removed.Add(int64(res.Deleted))
	return res, err
}

// decision turns a pulled entry into a decision, or refuses it.
func (c *Client) decision(scenario string, d wire.NewDecision, now time.Time) (model.Decision, bool) {
	a, err := netip.ParseAddr(d.Value)
	if err != nil || !wire.Public(a) {
		return model.Decision{}, false
	}
	dur, err := time.ParseDuration(d.Duration)
	if err != nil || dur <= 0 {
		return model.Decision{}, false
	}
	p := netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
	if c.cfg.Decisions.Allowlisted(p) {
		return model.Decision{}, false
	}
	return model.Decision{Value: p, Type: "ban", Origin: model.OriginCommunity, Scenario: scenario, Reason: "community blocklist", Until: now.Add(dur)}, true
}

// add adds ds in chunks; a chunk the service refuses (an address it
// protects, such as one of this host's) is added one by one, skipping the
// refused.
func (c *Client) add(ctx context.Context, ds []model.Decision) (added, refused int, err error) {
	for len(ds) > 0 {
		n := min(len(ds), 500)
		chunk := ds[:n]
		ds = ds[n:]
		err := c.cfg.Decisions.Add(ctx, chunk)
		if err == nil {
			added += n
			continue
		}
		if !errors.Is(err, decision.ErrProtected) && !errors.Is(err, decision.ErrAllowlisted) && !errors.Is(err, decision.ErrInvalid) {
			return added, refused, fmt.Errorf("pull: add: %w", err)
		}
		for _, d := range chunk {
			if err := c.cfg.Decisions.Add(ctx, []model.Decision{d}); err != nil {
				refused++
				continue
			}
			added++
		}
	}
	return added, refused, nil
}
