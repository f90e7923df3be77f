package main

import (
	"context"

	"github.com/moatsec/moat/enforce"
	"github.com/moatsec/moat/enforce/nft"
	"github.com/moatsec/moat/enforce/xdp"
	"github.com/moatsec/moat/internal/metrics"
)

// The metrics server reads the backends' counters through the reconciler: a
// backend is not safe for concurrent use. Element counts are read from the
// kernel itself, on sockets and map descriptors of their own, so a dump of
// a million elements never holds a ban back; the metrics server caches
// them, since such a dump costs seconds of kernel time.

func nftView(r *enforce.Reconciler, bs []enforce.Backend) metrics.NFTables {
	for _, b := range bs {
		if n, ok := b.(*nft.Backend); ok {
			return nftMetrics{r: r, b: n}
		}
	}
	return nil
}

func xdpView(r *enforce.Reconciler, bs []enforce.Backend) metrics.XDP {
	for _, b := range bs {
		if x, ok := b.(*xdp.Backend); ok {
			return xdpMetrics{r: r, b: x}
		}
	}
	return nil
}

type nftMetrics struct {
	r *enforce.Reconciler
	b *nft.Backend
}

func (m nftMetrics) DropCounters(ctx context.Context) (map[string]metrics.DropCounter, error) {
	var out map[string]metrics.DropCounter
	err := m.r.Do(ctx, func() error {
		cs, err := m.b.Counters(ctx)
		if err != nil {
			return err
		}
		out = make(map[string]metrics.DropCounter, len(cs))
		for k, c := range cs {
			out[k] = metrics.DropCounter(c)
		}
		return nil
	})
	return out, err
}

func (m nftMetrics) Elements(ctx context.Context) (map[string]int, error) {
	return m.b.CountElements(ctx)
}

type xdpMetrics struct {
	r *enforce.Reconciler
	b *xdp.Backend
}

func (m xdpMetrics) XDPCounters() (metrics.XDPCounters, error) {
	// Per-CPU map reads do not touch what Apply writes; no need to queue.
	c, err := m.b.Counters()
	return metrics.XDPCounters(c), err
}

func (m xdpMetrics) Elements(ctx context.Context) (map[string]int, error) {
	return m.b.CountElements(ctx)
}
