package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// pushItem is one local alert waiting to be pushed, already in the wire
// shape: converted when it is queued, so a later change to the caller's
// maps cannot race the push.
type pushItem struct {
	alert pushAlert
}

// The CrowdSec LAPI's alert shape (its models.Alert), as an agent pushes it.
type pushMeta struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type pushEvent struct {
	Meta      []pushMeta `json:"meta"`
	Timestamp string     `json:"timestamp"`
}

type pushSource struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
	IP    string `json:"ip,omitempty"`
	Range string `json:"range,omitempty"`
}

type pushDecision struct {
	Duration  string `json:"duration"`
	Origin    string `json:"origin"`
	Scenario  string `json:"scenario"`
	Scope     string `json:"scope"`
	Simulated bool   `json:"simulated"`
	Type      string `json:"type"`
	Value     string `json:"value"`
}

type pushAlert struct {
	Capacity        int32          `json:"capacity"`
	Decisions       []pushDecision `json:"decisions"`
	Events          []pushEvent    `json:"events"`
	EventsCount     int32          `json:"events_count"`
	Labels          []string       `json:"labels"`
	Leakspeed       string         `json:"leakspeed"`
	Message         string         `json:"message"`
	Meta            []pushMeta     `json:"meta,omitempty"`
	Remediation     bool           `json:"remediation"`
	Scenario        string         `json:"scenario"`
	ScenarioHash    string         `json:"scenario_hash"`
	ScenarioVersion string         `json:"scenario_version"`
	Simulated       bool           `json:"simulated"`
	Source          pushSource     `json:"source"`
	StartAt         string         `json:"start_at"`
	StopAt          string         `json:"stop_at"`
}

// maxPushEvents bounds the events an alert carries to the server: the
// scenario's capacity is a few, a counter's can be thousands.
const maxPushEvents = 20

func toPush(a model.Alert, ds []model.Decision, now time.Time) pushAlert {
	p := pushAlert{
		Scenario: a.Scenario, ScenarioHash: a.ScenarioHash, ScenarioVersion: a.ScenarioVersion,
		Message: a.Message, EventsCount: int32(min(a.EventsCount, 1<<31-1)), Leakspeed: "",
		Remediation: len(ds) > 0, Simulated: a.Simulated,
		Source:  pushSource{Scope: a.Scope, Value: a.Value},
		StartAt: a.Start.UTC().Format(time.RFC3339Nano), StopAt: a.Stop.UTC().Format(time.RFC3339Nano),
		Events: []pushEvent{}, Decisions: []pushDecision{}, Labels: []string{},
	}
	if a.Source.IsValid() {
		p.Source.Scope, p.Source.Value = model.ScopeOf(a.Source), model.ValueString(a.Source)
		if a.Source.Bits() == a.Source.Addr().BitLen() {
			p.Source.IP = a.Source.Addr().String()
		} else {
			p.Source.Range = a.Source.String()
		}
	}
	for k, v := range a.Meta {
		p.Meta = append(p.Meta, pushMeta{Key: k, Value: v})
	}
	for i, ev := range a.Events {
		if i == maxPushEvents {
			break
		}
		e := pushEvent{Meta: []pushMeta{}, Timestamp: ev["timestamp"]}
		for k, v := range ev {
			if k != "timestamp" {
				e.Meta = append(e.Meta, pushMeta{Key: k, Value: v})
			}
		}
		if e.Timestamp == "" {
			e.Timestamp = a.Stop.UTC().Format(time.RFC3339Nano)
		}
		p.Events = append(p.Events, e)
	}
	for _, d := range ds {
		dur := d.Until.Sub(now).Round(time.Millisecond)
		if d.Until.IsZero() {
			// The server caps durations; a year stands for "no expiry".
			dur = 365 * 24 * time.Hour
		}
		if dur <= 0 {
			continue
		}
		p.Decisions = append(p.Decisions, pushDecision{
			Duration: dur.String(), Origin: "crowdsec", Scenario: d.Scenario,
			Scope: model.ScopeOf(d.Value), Simulated: d.Simulated, Type: d.Type, Value: model.ValueString(d.Value),
		})
	}
	return p
}

// Push queues a local alert and the decisions it took for the server. It
// never blocks: past the queue's bound the alert is dropped and counted.
// Alerts of fleet decisions must not come here (they came from the
// server); the daemon pushes only its own detections.
func (c *Client) Push(a model.Alert, ds []model.Decision) {
	for _, d := range ds {
		if d.Origin == model.OriginFleet {
			return
		}
	}
	c.remember(ds)
	select {
	case c.queue <- pushItem{alert: toPush(a, ds, time.Now())}:
	default:
		c.stats.dropped.Add(1)
	}
}

// pushLoop sends the queue in batches until ctx ends. A batch that fails
// is retried with backoff, the queue filling behind it meanwhile.
func (c *Client) pushLoop(ctx context.Context) {
	bo := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	batch := make([]pushAlert, 0, c.cfg.PushBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-c.queue:
			batch = append(batch[:0], it.alert)
		}
		c.fill(ctx, &batch)
		// moved counts the replicas moved to since this batch last
		// waited: a replica that just failed leaves the retry to the
		// next one at once, and the backoff starts once each was tried.
		moved := 0
		for {
			before, _ := c.server()
			err := c.push(ctx, batch)
			if err == nil {
				c.stats.pushed.Add(int64(len(batch)))
				bo.reset()
				break
			}
			if ctx.Err() != nil {
				return
			}
			c.stats.pushErrors.Add(1)
			var se *statusError
			if errors.As(err, &se) && (se.code == http.StatusBadRequest || se.code == http.StatusRequestEntityTooLarge) {
				// The server will never take it: retrying would hold
				// back every alert after it.
				c.report("push (dropped: refused)", err)
				break
			}
			c.report("push", err)
			if now, _ := c.server(); now != before && moved+1 < len(c.cfg.Servers) {
				moved++
				continue
			}
			moved = 0
			if !sleep(ctx, bo.next()) {
				return
			}
		}
	}
}

// fill adds what is queued to the batch, waiting up to PushInterval for
// more when it is not full.
func (c *Client) fill(ctx context.Context, batch *[]pushAlert) {
	var deadline <-chan time.Time
	if c.cfg.PushInterval > 0 {
		t := time.NewTimer(c.cfg.PushInterval)
		defer t.Stop()
		deadline = t.C
	}
	for len(*batch) < c.cfg.PushBatch {
		select {
		case it := <-c.queue:
			*batch = append(*batch, it.alert)
			continue
		default:
		}
		if deadline == nil {
			return
		}
		select {
		case it := <-c.queue:
			*batch = append(*batch, it.alert)
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (c *Client) push(ctx context.Context, batch []pushAlert) error {
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	i, base := c.server()
	resp, err := c.authed(pctx, base, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(pctx, http.MethodPost, base+"/v1/alerts", bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	})
	if err != nil {
		// Unreachable, or refused the login: the retry goes to the
		// next replica.
		c.failover(i)
		return fmt.Errorf("push %d alerts to %s: %w", len(batch), base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		if resp.StatusCode >= 500 {
			c.failover(i)
		}
		return fmt.Errorf("push %d alerts to %s: %w", len(batch), base, readStatus(resp))
	}
	return nil
}

// ownKey is a ban this host took: when the server streams it back, it is
// not held a second time.
type ownKey struct {
	value    string
	scenario string
}

// maxOwn bounds the bans remembered; past it the expired are forgotten,
// then the store's check (ServiceApplier) is all that is left.
const maxOwn = 100_000

// remember notes the bans of a pushed alert. The server may stream one
// back before this host's store has committed it (the kernel comes first
// on the local path), which the store's check would miss.
func (c *Client) remember(ds []model.Decision) {
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	if c.own == nil {
		c.own = map[ownKey]time.Time{}
	}
	if len(c.own) >= maxOwn {
		now := time.Now()
		for k, until := range c.own {
			if !until.IsZero() && now.After(until) {
				delete(c.own, k)
			}
		}
		if len(c.own) >= maxOwn {
			return
		}
	}
	for _, d := range ds {
		if d.Scenario != "" {
			c.own[ownKey{model.ValueString(d.Value), d.Scenario}] = d.Until
		}
	}
}

// isOwn reports whether d is a ban this host took and pushed.
func (c *Client) isOwn(d model.Decision) bool {
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	until, ok := c.own[ownKey{model.ValueString(d.Value), d.Scenario}]
	return ok && (until.IsZero() || time.Now().Before(until))
}
