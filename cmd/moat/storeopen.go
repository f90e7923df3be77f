package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/enforce/store/postgres"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// daemonStore is what the daemon asks of its store: the decision
// service's, the API's and the machine endpoints' needs, the start's
// paged load, and closing. The embedded SQLite store (a single host, the
// default) and PostgreSQL (a fleet server, replicas sharing one database)
// both provide it.
type daemonStore interface {
	decision.Store
	api.Store
	api.MachineStore
	ActivePages(ctx context.Context, now time.Time, size int, fn func([]model.Decision) error) error
	Close() error
}

var (
	_ daemonStore = (*store.Store)(nil)
	_ daemonStore = pgSweeps{}
)

// openStore opens store.dsn's PostgreSQL database when set, else the
// SQLite file in the state directory.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (daemonStore, error) {
	if cfg.Store.DSN == "" {
		st, err := store.Open(ctx, filepath.Join(cfg.StateDir, store.FileName), store.Options{})
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	}
	st, err := postgres.Open(ctx, cfg.Store.DSN, postgres.Options{Logger: log.With("component", "postgres")})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return pgSweeps{st}, nil
}

// pgSweeps runs the store's sweeps as singleton jobs: every replica
// sharing the database runs them on its schedule, one at a time does the
// work.
type pgSweeps struct{ *postgres.Store }

func (s pgSweeps) Expire(ctx context.Context, now time.Time) (int, error) {
	var n int
	_, err := s.Singleton(ctx, postgres.JobExpire, func(ctx context.Context) error {
		var err error
		n, err = s.Store.Expire(ctx, now)
		return err
	})
	return n, err
}

func (s pgSweeps) Prune(ctx context.Context, cutoff time.Time) (store.PruneStats, error) {
	var ps store.PruneStats
	_, err := s.Singleton(ctx, postgres.JobPrune, func(ctx context.Context) error {
		var err error
		ps, err = s.Store.Prune(ctx, cutoff)
		return err
	})
	return ps, err
}

// changeFeed is a store that learns of changes other processes commit
// (PostgreSQL's NOTIFY): the fleet streams of every replica wake on them.
type changeFeed interface {
	Changed() <-chan struct{}
}

// forwardChanges wakes c at each change the store announces, until ctx
// ends.
func forwardChanges(ctx context.Context, f changeFeed, c *api.Changes) error {
	for {
		select {
		case <-f.Changed():
			c.Notify()
		case <-ctx.Done():
			return nil
		}
	}
}
