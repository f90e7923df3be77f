package api

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	dynallow "github.com/moatsec/moat/enforce/allowlist"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/model"
)

// AllowCheck answers GET /v1/admin/allowlist/check: which entries protect
// an address or range.
type AllowCheck struct {
	Value     string           `json:"value"`
	Protected bool             `json:"protected"`
	Entries   []dynallow.Match `json:"entries"`
	// Builtin is a protection moat always applies (loopback, this host's
	// own addresses), given when no entry protects the value.
	Builtin string `json:"builtin,omitempty"`
}

// AllowEntryRequest is the body of POST /v1/admin/allowlist/entries: an
// allowlist add with a comment and an expiry.
type AllowEntryRequest struct {
	Value   string `json:"value"`
	Comment string `json:"comment"`
	// Expires is zero for an entry that never expires.
	Expires   time.Time `json:"expires,omitzero"`
	AllowWide bool      `json:"allow_wide,omitempty"`
}

// AllowlistAdmin is what the allowlist endpoints work with.
type AllowlistAdmin struct {
	Manager *dynallow.Manager
	Runtime *dynallow.Runtime
	// Builtin refuses what moat never bans whatever the allowlist says
	// (enforce.Guard.Check); nil is none.
	Builtin func(netip.Prefix) error
	Now     func() time.Time
}

// AllowlistAdminRoutes adds GET /v1/admin/allowlist/check?value= and
// POST /v1/admin/allowlist/entries to the admin mux.
func AllowlistAdminRoutes(mux *http.ServeMux, a AllowlistAdmin) {
	if a.Now == nil {
		a.Now = time.Now
	}
	mux.Handle("GET /v1/admin/allowlist/check", handle(func(w http.ResponseWriter, r *http.Request) error {
		v := r.URL.Query().Get("value")
		p, err := parsePrefixParam(v)
		if err != nil {
			return badRequest("allowlist check %s", err)
		}
		out := AllowCheck{Value: model.ValueString(p), Entries: a.Manager.Check(p)}
		if out.Entries == nil {
			out.Entries = []dynallow.Match{}
		}
		if len(out.Entries) == 0 && a.Builtin != nil {
			if err := a.Builtin(p); err != nil {
				out.Builtin = err.Error()
			}
		}
		out.Protected = len(out.Entries) > 0 || out.Builtin != ""
		writeJSON(w, http.StatusOK, out)
		return nil
	}))
	mux.Handle("POST /v1/admin/allowlist/entries", handle(func(w http.ResponseWriter, r *http.Request) error {
		var req AllowEntryRequest
		if err := decodeJSON(r.Body, &req); err != nil {
			return badRequest("%v", err)
		}
		p, err := parsePrefixParam(req.Value)
		if err != nil {
			return badRequest("allowlist value %s", err)
		}
		if len(req.Comment) > 1024 {
			return badRequest("allowlist comment: longer than 1024 bytes")
		}
		lifted, err := a.Runtime.Add(r.Context(), p, req.Comment, req.Expires, req.AllowWide)
		if err != nil {
			return err
		}
		a.Manager.Rebuild()
		a.Manager.Refresh()
		writeJSON(w, http.StatusCreated, AllowResponse{
			Entry:  decision.AllowEntry{Value: model.Canonical(p), Reason: req.Comment, Created: a.Now()},
			Lifted: fromModels(lifted),
		})
		return nil
	}))
}

// CheckAllow asks which entries protect value.
func (c *Client) CheckAllow(ctx context.Context, value string) (AllowCheck, error) {
	var out AllowCheck
	err := c.do(ctx, http.MethodGet, "/v1/admin/allowlist/check", url.Values{"value": {value}}, nil, &out)
	return out, err
}

// AddAllowEntry adds an allowlist entry with a comment and an expiry.
func (c *Client) AddAllowEntry(ctx context.Context, req AllowEntryRequest) (AllowResponse, error) {
	var out AllowResponse
	err := c.do(ctx, http.MethodPost, "/v1/admin/allowlist/entries", nil, req, &out)
	return out, err
}
