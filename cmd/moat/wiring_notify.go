package main

import (
	"context"
	"fmt"
	"time"

	"github.com/moatsec/moat/enforce/notify"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// Reinject queues stored alert id for channels, or for the channels the
// profiles give it today when none are named (the profiles may have
// changed since it was raised: reinjecting tests the configuration as it
// is). It sends the decisions the alert took, expired ones included.
func (d *decisions) Reinject(ctx context.Context, id int64, channels []string) ([]string, error) {
	rec, err := d.store.GetAlert(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(channels) == 0 {
		out, err := d.profiles.Decide(ctx, rec.Alert, d.store, time.Now())
		if err != nil {
			return nil, fmt.Errorf("alert %d: %w", id, err)
		}
		channels = out.Notifications
	}
	for _, c := range channels {
		if !d.notify.Has(c) {
			return nil, fmt.Errorf("%w: %q", notify.ErrUnknownChannel, c)
		}
	}
	var ds []model.Decision
	for _, did := range rec.Decisions {
		err := d.store.ListPages(ctx, store.Filter{ID: did, History: true}, 0, func(rs []store.Record) error {
			for _, r := range rs {
				ds = append(ds, r.Decision)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("alert %d: decision %d: %w", id, did, err)
		}
	}
	d.notify.Notify(rec.Alert, ds, channels)
	return channels, nil
}
