package api

import (
	"context"
	"net/http"

	"github.com/moatsec/moat/enforce/action"
)

// ActionStats is an action as moat actions list shows it: command, queue
// and run counters.
type ActionStats = action.Stats

// ActionLister is what the actions endpoint needs of enforce/action.
type ActionLister interface {
	Stats() []action.Stats
}

// ActionAdminRoutes adds GET /v1/admin/actions to the admin mux.
func ActionAdminRoutes(mux *http.ServeMux, a ActionLister) {
	mux.Handle("GET /v1/admin/actions", handle(func(w http.ResponseWriter, _ *http.Request) error {
		out := a.Stats()
		if out == nil {
			out = []action.Stats{}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}))
}

// Actions lists the configured actions and their counters.
func (c *Client) Actions(ctx context.Context) ([]ActionStats, error) {
	var out []ActionStats
	err := c.do(ctx, http.MethodGet, "/v1/admin/actions", nil, nil, &out)
	return out, err
}
