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
	c.pulls.Add(1)
	_, err := c.pull(ctx, startup)
	if err != nil {
		c.pullErrors.Add(1)
	}
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
	recs, err := c.cfg.Decisions.List(ctx, store.Filter{Origin: string(model.OriginCommunity)})
	if err != nil {
		return res, fmt.Errorf("pull: list the community decisions: %w", err)
	}
	held := map[netip.Addr][]model.Decision{}
	for _, r := range recs {
		held[r.Value.Addr()] = append(held[r.Value.Addr()], r.Decision)
	}
	// Make before break: new decisions are added before the ones they
	// replace are deleted (the kernel counts bans by decision ID), so a
	// pull never opens a window where a listed address gets through.
	var add []model.Decision
	var drop []model.Decision
	listed := map[netip.Addr]bool{}
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
			a := dec.Value.Addr()
			if listed[a] {
				continue
			}
			listed[a] = true
			old := held[a]
			// An expiry within a few minutes of the held one is the
			// same listing: kept, not rewritten at every pull.
			if len(old) == 1 && old[0].Until.Sub(dec.Until).Abs() < 10*time.Minute {
				continue
			}
			add = append(add, dec)
			drop = append(drop, old...)
		}
	}
	for _, g := range s.Deleted {
		if !strings.EqualFold(g.Scope, "ip") {
			continue
		}
		for _, v := range g.Decisions {
			if a, err := netip.ParseAddr(v); err == nil && !listed[a.Unmap()] {
				drop = append(drop, held[a.Unmap()]...)
			}
		}
	}
	if startup {
		// The whole list: what it no longer holds goes, so an address
		// delisted while this host was down does not stay banned.
		for a, ds := range held {
			if !listed[a] {
				drop = append(drop, ds...)
			}
		}
	}
	if room := c.cfg.MaxPulled - (len(recs) - len(drop)); len(add) > room {
		res.Refused += len(add) - max(0, room)
		add = add[:max(0, room)]
	}
	n, refused, err := c.add(ctx, add)
	res.Added, res.Refused = n, res.Refused+refused
	c.pulled.Add(int64(n))
	if err != nil {
		return res, err
	}
	for _, d := range drop {
		gone, err := c.cfg.Decisions.Delete(ctx, store.Filter{ID: d.ID})
		if err != nil {
			return res, fmt.Errorf("pull: delete %s: %w", d.Value, err)
		}
		res.Deleted += len(gone)
	}
	c.removed.Add(int64(res.Deleted))
	c.held.Store(int64(len(recs) + n - res.Deleted))
	return res, nil
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
