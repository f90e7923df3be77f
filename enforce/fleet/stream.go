package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// StateFile is the file, in the state directory, holding the stream
// position.
const StateFile = "fleet.json"

// state is what StateFile holds. The position is the server's: a state
// saved against a server not among the configured replicas is not used.
// Replicas share one store, so one sequence: the position read from
// one holds on every other.
type state struct {
	Server string `json:"server"`
	Seq    int64  `json:"seq"`
}

// openTimeout bounds the login and the opening of a stream.
const openTimeout = 30 * time.Second

// errNoStream is a server without a fleet stream (a CrowdSec LAPI).
var errNoStream = errors.New("the server has no fleet decision stream")

// held is the consumer's state: the fleet decisions held, by server ID,
// with the local ID (0: refused here) and expiry of each.
type held struct {
	local map[int64]heldDecision
	// seen collects the server IDs streamed since the last checkpoint,
	// for a startup checkpoint to drop what the server no longer has.
	seen map[int64]bool
	// pending collects the server IDs streamed as new since the last
	// checkpoint, across reconnects: a stream cut between a delta's
	// events and its checkpoint leaves them applied while the position
	// stays before them. The delta resumed from that position names
	// again each of them still active, and none deleted since (it
	// carries deletions only of decisions older than the position), so
	// its checkpoint drops those it did not name.
	pending map[int64]bool
	// pruned is when expired entries were last forgotten.
	pruned time.Time
}

type heldDecision struct {
	id    int64
	until time.Time
}

func (c *Client) loadState() state {
	b, err := os.ReadFile(filepath.Join(c.cfg.StateDir, StateFile))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			c.report("read stream position", err)
		}
		return state{}
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil || !c.isReplica(st.Server) || st.Seq < 0 {
		return state{}
	}
	return st
}

// isReplica reports whether server is one of the configured replicas.
func (c *Client) isReplica(server string) bool {
	if len(c.cfg.Servers) == 0 {
		return server == c.cfg.Server
	}
	return slices.Contains(c.cfg.Servers, server)
}

// saveState writes the position. Not synced: a position lost in a crash
// only replays decisions, which apply nothing twice.
func (c *Client) saveState(seq int64) error {
	if c.cfg.StateDir == "" {
		return nil
	}
	b, _ := json.Marshal(state{Server: c.Server(), Seq: seq})
	p := filepath.Join(c.cfg.StateDir, StateFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("save stream position: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("save stream position: %w", err)
	}
	return nil
}

// streamLoop keeps a stream open until ctx ends, reconnecting with
// backoff. Nothing is removed while disconnected: the fleet decisions
// held stay until they expire or the server says they are deleted.
func (c *Client) streamLoop(ctx context.Context) {
	bo := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	var h *held
	seq := c.loadState().Seq
	c.stats.seq.Store(seq)
	// tries counts the attempts since a stream last held.
	tries := 0
	for ctx.Err() == nil {
		if h == nil {
			local, err := c.cfg.Applier.Held(ctx)
			if err != nil {
				c.report("fleet decisions held", err)
				if !sleep(ctx, bo.next()) {
					return
				}
				continue
			}
			h = &held{local: map[int64]heldDecision{}, seen: map[int64]bool{}, pending: map[int64]bool{}}
			for sid, id := range local {
				h.local[sid] = heldDecision{id: id}
			}
		}
		start := time.Now()
		i, base := c.server()
		next, connected, err := c.streamOnce(ctx, h, base, seq)
		if next != seq {
			seq = next
			if serr := c.saveState(seq); serr != nil {
				c.report("stream", serr)
			}
		}
		if errors.Is(err, errNoStream) {
			if c.cfg.BouncerKey == "" {
				c.report("stream", fmt.Errorf("%w and no bouncer_key is configured to poll its bouncer stream", err))
			} else {
				c.pollLoop(ctx, h)
				return
			}
		} else if err != nil && ctx.Err() == nil {
			c.report("stream", fmt.Errorf("%s: %w", base, err))
		}
		if ctx.Err() != nil {
			return
		}
		// A stream that lasted is a server that was fine: the next
		// attempt starts from the shortest backoff.
		if time.Since(start) > time.Minute {
			bo.reset()
		}
		c.stats.reconnects.Add(1)
		// The next attempt goes to the next replica at once, while one
		// is left untried since the last stream that held: a replica
		// killed mid-stream costs no backoff. Once each was tried, the
		// backoff keeps a fleet of agents off servers that are down.
		if connected && time.Since(start) > time.Second {
			tries = 0
		}
		c.failover(i)
		if tries++; tries < len(c.cfg.Servers) {
			continue
		}
		tries = 0
		if !sleep(ctx, bo.next()) {
			return
		}
	}
}

// streamOnce opens one stream to base and applies it until it ends; it
// returns the position reached and whether the stream was opened.
func (c *Client) streamOnce(ctx context.Context, h *held, base string, seq int64) (int64, bool, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A silent stream is a dead one (a peer gone without a FIN): the
	// server sends a heartbeat well within StreamTimeout. Armed before
	// the request, as a server that accepts and never answers is as dead,
	// with room for a login (bcrypt on a busy server) until the answer.
	watchdog := time.AfterFunc(max(c.cfg.StreamTimeout, openTimeout), cancel)
	defer watchdog.Stop()
	url := base + api.FleetStreamPath + "?after=" + strconv.FormatInt(seq, 10)
	resp, err := c.authed(sctx, base, func() (*http.Request, error) {
		return http.NewRequestWithContext(sctx, http.MethodGet, url, nil)
	})
	if err != nil {
		return seq, false, fmt.Errorf("open stream: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return seq, false, errNoStream
	default:
		return seq, false, fmt.Errorf("open stream: %w", readStatus(resp))
	}
	watchdog.Reset(c.cfg.StreamTimeout)
	// What a cut stream saw before its checkpoint does not count toward
	// this one's: a startup must see again everything it keeps.
	clear(h.seen)
	c.stats.connected.Store(true)
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect(true, base, seq)
	}
	defer func() {
		c.stats.connected.Store(false)
		if c.cfg.OnConnect != nil {
			c.cfg.OnConnect(false, base, seq)
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	lastSave := time.Now()
	for sc.Scan() {
		watchdog.Reset(c.cfg.StreamTimeout)
		var ev api.FleetEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return seq, true, fmt.Errorf("stream: malformed event: %w", err)
		}
		switch ev.Kind {
		case api.FleetNew:
			for _, d := range ev.Decisions {
				h.pending[d.ID] = true
			}
			if err := c.applyNew(ctx, h, ev.Decisions, ev.At); err != nil {
				return seq, true, err
			}
		case api.FleetDeleted:
			if err := c.applyDeleted(ctx, h, ev.Decisions); err != nil {
				return seq, true, err
			}
		case api.FleetCheckpoint:
			drop := c.dropUnseen
			if !ev.Startup {
				drop = c.dropUnconfirmed
			}
			if err := drop(ctx, h); err != nil {
				return seq, true, err
			}
			clear(h.seen)
			clear(h.pending)
			seq = ev.Seq
			c.stats.seq.Store(seq)
			// Saved at most every second: a replay after a crash is
			// harmless, a write per ban is not free.
			if ev.Startup || time.Since(lastSave) > time.Second {
				if err := c.saveState(seq); err != nil {
					c.report("stream", err)
				}
				lastSave = time.Now()
			}
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		if sctx.Err() != nil {
			return seq, true, fmt.Errorf("stream silent for %s: taken for dead", c.cfg.StreamTimeout)
		}
		return seq, true, fmt.Errorf("stream: %w", err)
	}
	return seq, true, errors.New("stream ended by the server")
}

// applyNew holds the decisions not held yet.
func (c *Client) applyNew(ctx context.Context, h *held, ds []api.FleetDecision, at time.Time) error {
	now := time.Now()
	var add []model.Decision
	var sids []int64
	for _, d := range ds {
		h.seen[d.ID] = true
		if _, ok := h.local[d.ID]; ok {
			continue
		}
		md, ok := fleetDecision(d, now)
		if !ok {
			continue
		}
		if c.isOwn(md) {
			// Held here already, under its local origin: marked held
			// (with no local ID) so its deletion is a no-op here.
			h.local[d.ID] = heldDecision{until: md.Until}
			continue
		}
		add = append(add, md)
		sids = append(sids, d.ID)
	}
	if len(add) == 0 {
		return nil
	}
	ids, err := c.cfg.Applier.Add(ctx, add)
	if err != nil {
		return fmt.Errorf("apply %d fleet decisions: %w", len(add), err)
	}
	for i, sid := range sids {
		h.local[sid] = heldDecision{id: ids[i], until: add[i].Until}
	}
	c.stats.applied.Add(int64(len(add)))
	if c.cfg.OnLag != nil && !at.IsZero() {
		lag := time.Since(at)
		for range add {
			c.cfg.OnLag(lag)
		}
	}
	c.prune(h, now)
	return nil
}

// applyDeleted drops the decisions held of those the server deleted.
func (c *Client) applyDeleted(ctx context.Context, h *held, ds []api.FleetDecision) error {
	var ids, sids []int64
	for _, d := range ds {
		hd, ok := h.local[d.ID]
		if !ok {
			continue
		}
		sids = append(sids, d.ID)
		if hd.id != 0 {
			ids = append(ids, hd.id)
		}
	}
	return c.drop(ctx, h, ids, sids)
}

func (c *Client) drop(ctx context.Context, h *held, ids, sids []int64) error {
	if len(ids) > 0 {
		if err := c.cfg.Applier.Delete(ctx, ids); err != nil {
			return fmt.Errorf("delete %d fleet decisions: %w", len(ids), err)
		}
		c.stats.deleted.Add(int64(len(ids)))
	}
	for _, sid := range sids {
		delete(h.local, sid)
	}
	return nil
}

// dropUnseen drops, after a startup (the whole active set), the fleet
// decisions held that the server no longer has.
func (c *Client) dropUnseen(ctx context.Context, h *held) error {
	var ids, sids []int64
	for sid, hd := range h.local {
		if h.seen[sid] {
			continue
		}
		sids = append(sids, sid)
		if hd.id != 0 {
			ids = append(ids, hd.id)
		}
	}
	return c.drop(ctx, h, ids, sids)
}

// dropUnconfirmed drops the decisions a cut stream applied before its
// checkpoint (pending) that the delta resumed from the same position did
// not name again (seen): deleted or expired since (see held.pending).
func (c *Client) dropUnconfirmed(ctx context.Context, h *held) error {
	var ids, sids []int64
	for sid := range h.pending {
		hd, ok := h.local[sid]
		if !ok || h.seen[sid] {
			continue
		}
		sids = append(sids, sid)
		if hd.id != 0 {
			ids = append(ids, hd.id)
		}
	}
	return c.drop(ctx, h, ids, sids)
}

// prune forgets, once a minute, held decisions that expired (the store
// expires them on its own), so the map stays the size of the active set.
func (c *Client) prune(h *held, now time.Time) {
	if now.Sub(h.pruned) < time.Minute {
		return
	}
	h.pruned = now
	for sid, hd := range h.local {
		if !hd.until.IsZero() && now.After(hd.until) {
			delete(h.local, sid)
		}
	}
}
