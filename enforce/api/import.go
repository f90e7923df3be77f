package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/model"
)

// MaxImportPerRequest bounds one import request. A file of a million lines
// is sent in many requests: each fits the body limit (MaxBodyBytes) and
// holds the store for one short transaction.
const MaxImportPerRequest = 5000

// ImportEntry is one decision of an import, with the line of the input it
// came from so a refusal can name it.
type ImportEntry struct {
	NewDecision
	Line int `json:"line,omitempty"`
}

// ImportRequest is the body of POST /v1/admin/decisions/import.
type ImportRequest struct {
	Decisions []ImportEntry `json:"decisions"`
}

// ImportSkip is an entry an import refused, and why.
type ImportSkip struct {
	Line   int    `json:"line,omitempty"`
	Value  string `json:"value"`
	Reason string `json:"reason"`
}

// ImportResponse answers an import: unlike an add, one bad or allowlisted
// entry does not refuse the others.
type ImportResponse struct {
	Imported int          `json:"imported"`
	Skipped  []ImportSkip `json:"skipped"`
}

// importDecisions is POST /v1/admin/decisions/import: each entry checked on
// its own, the allowlisted ones refused before the store sees them, the
// rest added in one transaction (or one by one, when the service refuses
// one the checks here cannot see, such as an address of this host).
func (s *Server) importDecisions(w http.ResponseWriter, r *http.Request) error {
	var req ImportRequest
	if err := decodeJSON(r.Body, &req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("%v", err)
	}
	if len(req.Decisions) > MaxImportPerRequest {
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("%d decisions: at most %d per import request", len(req.Decisions), MaxImportPerRequest)}
	}
	origin := model.OriginAPI
	if r.URL.Query().Get("origin") == string(model.OriginCLI) {
		origin = model.OriginCLI
	}
	now := s.Now()
	res := ImportResponse{Skipped: []ImportSkip{}}
	var ds []model.Decision
	var lines []int
	for _, e := range req.Decisions {
		d, err := checkNew(e.NewDecision, origin, now)
		if err == nil && s.svc.Allowlisted(d.Value) {
			err = decision.ErrAllowlisted
		}
		if err != nil {
			res.Skipped = append(res.Skipped, ImportSkip{Line: e.Line, Value: e.Value, Reason: err.Error()})
			continue
		}
		ds, lines = append(ds, d), append(lines, e.Line)
	}
	n, skipped, err := s.addEach(r.Context(), ds, lines)
	res.Imported = n
	res.Skipped = append(res.Skipped, skipped...)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// addEach adds ds at once; when the service refuses the batch for one of
// them it adds them one by one, and reports those it refuses.
func (s *Server) addEach(ctx context.Context, ds []model.Decision, lines []int) (int, []ImportSkip, error) {
	if len(ds) == 0 {
		return 0, nil, nil
	}
	err := s.svc.Add(ctx, ds)
	if err == nil {
		return len(ds), nil, nil
	}
	if !refusal(err) {
		return 0, nil, err
	}
	n := 0
	var skipped []ImportSkip
	for i := range ds {
		err := s.svc.Add(ctx, ds[i:i+1])
		switch {
		case err == nil:
			n++
		case refusal(err):
			skipped = append(skipped, ImportSkip{Line: lines[i], Value: ds[i].ValueString(), Reason: err.Error()})
		default:
			return n, skipped, err
		}
	}
	return n, skipped, nil
}

// refusal reports whether err refuses a decision rather than failing the
// store or the kernel.
func refusal(err error) bool {
	return errors.Is(err, decision.ErrAllowlisted) || errors.Is(err, decision.ErrProtected) || errors.Is(err, decision.ErrInvalid)
}

// checkNew checks one entry exactly as an add checks each of its
// decisions, so an import accepts what decisions add accepts.
func checkNew(nd NewDecision, origin model.Origin, now time.Time) (model.Decision, error) {
	b, err := json.Marshal(AddDecisionsRequest{Decisions: []NewDecision{nd}})
	if err != nil {
		return model.Decision{}, err
	}
	ds, err := DecodeAddDecisions(bytes.NewReader(b), origin, now)
	if err != nil {
		return model.Decision{}, errors.New(strings.TrimPrefix(err.Error(), "decision 0: "))
	}
	return ds[0], nil
}

// ImportDecisions imports one batch (at most MaxImportPerRequest). cli
// marks the decisions as added by an admin at the command line.
func (c *Client) ImportDecisions(ctx context.Context, es []ImportEntry, cli bool) (ImportResponse, error) {
	var q url.Values
	if cli {
		q = url.Values{"origin": {"cli"}}
	}
	var out ImportResponse
	return out, c.do(ctx, http.MethodPost, "/v1/admin/decisions/import", q, ImportRequest{Decisions: es}, &out)
}
