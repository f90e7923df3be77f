package api

import (
	"context"
	"strconv"
	"sync"

	"github.com/moatsec/moat/internal/model"
)

// maxPushChains bounds the alerts of one push decided at once.
const maxPushChains = 32

// storePushed stores a push's alerts through the decision service and
// returns their IDs in the push's order. Alerts on different values are
// decided concurrently: each waits on the store (a duplicate check, the
// escalation counts, the insert) and the store coalesces what concurrent
// callers ask into one query each, so a push of twenty costs a few round
// trips instead of sixty. Alerts sharing a value stay in the push's order,
// one after the other, so the second of two alerts on an address sees the
// first one's ban (a duplicate, or one more ban for escalation) as it did
// when a push was stored one alert at a time.
func (s *Server) storePushed(ctx context.Context, machine string, ps []pushed) ([]string, error) {
	ids := make([]string, len(ps))
	chains := pushChains(ps)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	work := make(chan []int)
	for range min(len(chains), maxPushChains) {
		wg.Go(func() {
			for chain := range work {
				for _, i := range chain {
					if ctx.Err() != nil {
						break
					}
					id, err := s.storeOne(ctx, machine, &ps[i])
					if err != nil {
						cancel(err)
						break
					}
					ids[i] = strconv.FormatInt(id, 10)
				}
			}
		})
	}
	for _, c := range chains {
		work <- c
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return ids, nil
}

// storeOne stores one pushed alert: simulated if the server's
// configuration says its scenario is.
func (s *Server) storeOne(ctx context.Context, machine string, p *pushed) (int64, error) {
	if s.machines.sim[p.alert.Scenario] {
		p.alert.Simulated = true
		for i := range p.decisions {
			p.decisions[i].Simulated = true
		}
	}
	id, ds, err := s.svc.AddAlert(ctx, p.alert, p.decisions, p.origin)
	if err != nil {
		return 0, err
	}
	if s.machines.onAlert != nil {
		s.machines.onAlert(machine, id, p.alert, ds)
	}
	return id, nil
}

// pushChains splits a push's alerts (by index) into chains that share no
// value: the alert's own and those of the decisions it carries. An alert
// whose values fall in two chains already formed would join them; that
// rare push is stored as one chain, in order.
func pushChains(ps []pushed) [][]int {
	var chains [][]int
	of := map[string]int{}
	for i := range ps {
		keys := []string{ps[i].alert.Value}
		for _, d := range ps[i].decisions {
			keys = append(keys, model.ValueString(d.Value))
		}
		c := -1
		for _, k := range keys {
			if j, ok := of[k]; ok {
				if c >= 0 && c != j {
					return [][]int{allIndexes(len(ps))}
				}
				c = j
			}
		}
		if c < 0 {
			c = len(chains)
			chains = append(chains, nil)
		}
		chains[c] = append(chains[c], i)
		for _, k := range keys {
			of[k] = c
		}
	}
	return chains
}

func allIndexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
