package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/moatsec/moat/enforce/decision"
)

// Client talks to the daemon's admin endpoints over the unix socket.
type Client struct {
	hc     *http.Client
	base   string
	socket string
}

// NewClient returns a client for the socket at path.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 2,
	}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}, base: "http://moat", socket: socket}
}

// Error is an error answer from the daemon.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("daemon answered %d: %s", e.Status, e.Message)
}

// ErrDaemonDown means nothing listens on the socket.
var ErrDaemonDown = errors.New("the moat daemon is not running (or its socket is elsewhere)")

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.open(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

// open sends a request and returns a successful answer, whose body the
// caller reads and closes; an error answer comes back as *Error.
func (c *Client) open(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, dialError(c.socket, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var eb errorBody
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(data, &eb) != nil || eb.Message == "" {
			eb.Message = string(data)
		}
		return nil, &Error{Status: resp.StatusCode, Message: eb.Message}
	}
	return resp, nil
}

// EachDecision lists decisions as Decisions does, handing each to fn as it
// is read off the socket: a listing of a million decisions holds one in
// memory at a time. total is how many the filters select whatever the
// limit (-1 when the daemon did not say). An error from fn stops the
// listing and is returned.
func (c *Client) EachDecision(ctx context.Context, q url.Values, fn func(Decision) error) (total int, err error) {
	const path = "/v1/admin/decisions"
	resp, err := c.open(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	total = -1
	if v := resp.Header.Get(TotalCountHeader); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			total = n
		}
	}
	bad := func(err error) (int, error) {
		return total, fmt.Errorf("decode GET %s answer: %w", path, err)
	}
	dec := json.NewDecoder(resp.Body)
	tok, err := dec.Token()
	if err != nil {
		return bad(err)
	}
	if tok == nil { // null: nothing
		return total, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return bad(fmt.Errorf("got %v, want a JSON array", tok))
	}
	for dec.More() {
		var d Decision
		if err := dec.Decode(&d); err != nil {
			return bad(err)
		}
		if err := fn(d); err != nil {
			return total, err
		}
	}
	// The closing bracket: a listing cut short by the daemon ends
	// without it, and must not pass for a complete one.
	if _, err := dec.Token(); err != nil {
		return bad(err)
	}
	return total, nil
}

// Decisions lists decisions; q takes ip, range, value, scope, type, origin,
// scenario, id, history and limit.
func (c *Client) Decisions(ctx context.Context, q url.Values) ([]Decision, error) {
	var out []Decision
	return out, c.do(ctx, http.MethodGet, "/v1/admin/decisions", q, nil, &out)
}

// AddDecisions adds decisions and returns them with their IDs. cli marks
// them as added by an admin at the command line.
func (c *Client) AddDecisions(ctx context.Context, ds []NewDecision, cli bool) ([]Decision, error) {
	var q url.Values
	if cli {
		q = url.Values{"origin": {"cli"}}
	}
	var out []Decision
	return out, c.do(ctx, http.MethodPost, "/v1/admin/decisions", q, AddDecisionsRequest{Decisions: ds}, &out)
}

// DeleteDecisions deletes the decisions q selects (all=true for all).
func (c *Client) DeleteDecisions(ctx context.Context, q url.Values) (DeleteResponse, error) {
	var out DeleteResponse
	return out, c.do(ctx, http.MethodDelete, "/v1/admin/decisions", q, nil, &out)
}

// Alerts lists alerts; q takes scenario, value, since and limit.
func (c *Client) Alerts(ctx context.Context, q url.Values) ([]Alert, error) {
	var out []Alert
	return out, c.do(ctx, http.MethodGet, "/v1/admin/alerts", q, nil, &out)
}

// Alert returns one alert in full.
func (c *Client) Alert(ctx context.Context, id int64) (Alert, error) {
	var out Alert
	return out, c.do(ctx, http.MethodGet, "/v1/admin/alerts/"+strconv.FormatInt(id, 10), nil, nil, &out)
}

// AddBouncer registers a bouncer and returns its key.
func (c *Client) AddBouncer(ctx context.Context, name string) (NewBouncer, error) {
	var out NewBouncer
	return out, c.do(ctx, http.MethodPost, "/v1/admin/bouncers", nil, map[string]string{"name": name}, &out)
}

// Bouncers lists bouncers.
func (c *Client) Bouncers(ctx context.Context) ([]Bouncer, error) {
	var out []Bouncer
	return out, c.do(ctx, http.MethodGet, "/v1/admin/bouncers", nil, nil, &out)
}

// DeleteBouncer removes a bouncer.
func (c *Client) DeleteBouncer(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/admin/bouncers/"+url.PathEscape(name), nil, nil, nil)
}

// AddAllow adds an allowlist entry and returns it with the bans it lifted.
func (c *Client) AddAllow(ctx context.Context, req AllowRequest) (AllowResponse, error) {
	var out AllowResponse
	return out, c.do(ctx, http.MethodPost, "/v1/admin/allowlist", nil, req, &out)
}

// Allowlist lists the allowlist.
func (c *Client) Allowlist(ctx context.Context) ([]decision.AllowEntry, error) {
	var out []decision.AllowEntry
	return out, c.do(ctx, http.MethodGet, "/v1/admin/allowlist", nil, nil, &out)
}

// DeleteAllow removes an allowlist entry.
func (c *Client) DeleteAllow(ctx context.Context, value string) error {
	return c.do(ctx, http.MethodDelete, "/v1/admin/allowlist", url.Values{"value": {value}}, nil, nil)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.do(ctx, http.MethodGet, "/v1/admin/status", nil, nil, &out)
}
