// Package api is moat's local HTTP API. Over the unix socket (api.socket)
// it serves the admin endpoints the CLI uses, under /v1/admin/; over TCP
// (api.listen, loopback by default) it serves only the bouncer endpoints of
// the CrowdSec LAPI (/v1/decisions/stream and /v1/decisions, authenticated
// with X-Api-Key), so CrowdSec bouncers work against moat unchanged. With
// the fleet server role on (EnableMachines), MachineHandler adds the LAPI's
// machine endpoints (/v1/watchers, /v1/alerts, /v1/heartbeat, decision
// deletes, authenticated with a login token), so CrowdSec agents push their
// alerts to moat unchanged. Client is the Go client the CLI uses.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// StatusFunc fills the daemon's part of the status.
type StatusFunc func(ctx context.Context) (Status, error)

// MaxBodyBytes bounds request bodies.
const MaxBodyBytes = 1 << 20

// Server serves the API.
type Server struct {
	svc    *decision.Service
	st     Store
	status StatusFunc
	// ErrorLog receives net/http's own errors (nil discards them).
	ErrorLog *log.Logger
	// Now is the clock (tests).
	Now func() time.Time

	// Limits, set by NewServer; change them before serving. No client
	// can hold more than these, whatever it reads or does not read.
	//
	// MaxStreams bounds the /v1/decisions/stream requests in progress,
	// MaxStreamsPerBouncer those of one bouncer; more are answered 429.
	MaxStreams, MaxStreamsPerBouncer int
	// MaxBulk bounds the responses of more than a page in progress
	// (startup pulls, unfiltered listings), on the bouncer endpoints and
	// separately on the admin ones; a request waits up to BulkWait for a
	// slot, then is answered 503.
	MaxBulk  int
	BulkWait time.Duration
	// WriteTimeout bounds the write of each page of a response: a client
	// that stops reading is cut off (counted in Stats) when it passes.
	WriteTimeout time.Duration
	// OnAbort, when set, is told of each request refused for a limit and
	// each response cut short, for the caller to log.
	OnAbort func(r *http.Request, err error)

	// MaxFleetStreams bounds the fleet decision streams open (machines'
	// long-lived connections), MaxFleetStreamsPerMachine those of one
	// machine (one more ends its oldest); 0 takes the defaults. FleetHeartbeat is how long a quiet
	// stream waits before it says it is alive; Changes, when set, wakes
	// the streams at each store write (see fleetstream.go).
	MaxFleetStreams, MaxFleetStreamsPerMachine int
	FleetHeartbeat                             time.Duration
	Changes                                    *Changes

	lim   limits
	fleet fleetState
	feed  fleetFeed
	// machines serves the CrowdSec LAPI machine endpoints once
	// EnableMachines ran; nil otherwise.
	machines *machines
}

// NewServer builds a server over the decision service and the store it
// writes to, which the server reads bouncers, streams and alerts from.
// status may be nil.
func NewServer(svc *decision.Service, st Store, status StatusFunc) *Server {
	return &Server{
		svc: svc, st: st, status: status, Now: time.Now,
		MaxStreams: DefaultMaxStreams, MaxStreamsPerBouncer: DefaultMaxStreamsPerBouncer,
		MaxBulk: DefaultMaxBulk, BulkWait: DefaultBulkWait, WriteTimeout: DefaultWriteTimeout,
	}
}

// apiError is an error with its HTTP status.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		code = ae.code
	case errors.As(err, &mbe):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrExists):
		code = http.StatusConflict
	case errors.Is(err, decision.ErrInvalid), errors.Is(err, decision.ErrEmptyFilter):
		code = http.StatusBadRequest
	case errors.Is(err, decision.ErrAllowlisted), errors.Is(err, decision.ErrConfigEntry), errors.Is(err, decision.ErrProtected):
		code = http.StatusConflict
	}
	writeJSON(w, code, errorBody{Message: err.Error()})
}

// handle adapts a handler that returns an error.
func handle(f func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		if err := f(w, r); err != nil {
			writeError(w, err)
		}
	}
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
}

// BouncerHandler serves only the CrowdSec bouncer endpoints.
func (s *Server) BouncerHandler() http.Handler {
	mux := http.NewServeMux()
	s.bouncerRoutes(mux)
	mux.HandleFunc("/", notFound)
	return mux
}

// AdminHandler serves the admin endpoints and the bouncer endpoints.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	s.bouncerRoutes(mux)
	mux.Handle("GET /v1/admin/decisions", handle(s.listDecisions))
	mux.Handle("POST /v1/admin/decisions", handle(s.addDecisions))
	mux.Handle("DELETE /v1/admin/decisions", handle(s.deleteDecisions))
	mux.Handle("POST /v1/admin/decisions/import", handle(s.importDecisions))
	mux.Handle("GET /v1/admin/alerts", handle(s.listAlerts))
	mux.Handle("GET /v1/admin/alerts/{id}", handle(s.getAlert))
	mux.Handle("GET /v1/admin/bouncers", handle(s.listBouncers))
	mux.Handle("POST /v1/admin/bouncers", handle(s.addBouncer))
	mux.Handle("DELETE /v1/admin/bouncers/{name}", handle(s.deleteBouncer))
	mux.Handle("GET /v1/admin/allowlist", handle(s.listAllow))
	mux.Handle("POST /v1/admin/allowlist", handle(s.addAllow))
	mux.Handle("DELETE /v1/admin/allowlist", handle(s.deleteAllow))
	mux.Handle("GET /v1/admin/status", handle(s.getStatus))
	s.machineAdminRoutes(mux)
	mux.HandleFunc("/", notFound)
	return mux
}

func (s *Server) bouncerRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/decisions/stream", handle(s.stream))
	mux.Handle("HEAD /v1/decisions/stream", handle(s.stream))
	mux.Handle("GET /v1/decisions", handle(s.getDecisions))
	mux.Handle("HEAD /v1/decisions", handle(s.getDecisions))
}

var errForbidden = &apiError{http.StatusUnauthorized, "access forbidden"}

func (s *Server) auth(r *http.Request) (store.Bouncer, error) {
	key := r.Header.Get("X-Api-Key")
	if key == "" || len(key) > 256 {
		return store.Bouncer{}, errForbidden
	}
	b, err := s.st.AuthBouncer(r.Context(), key)
	if errors.Is(err, store.ErrUnauthorized) {
		return store.Bouncer{}, errForbidden
	}
	return b, err
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// stream is GET /v1/decisions/stream: with startup=true the whole active
// set, else what changed since this bouncer's previous successful pull.
// The store is read a page at a time and each page written under its own
// deadline: no store connection waits on the client.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) error {
	b, err := s.auth(r)
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead {
		// No body and no bookkeeping: the next GET's delta stays whole.
		w.WriteHeader(http.StatusOK)
		return nil
	}
	release, err := s.acquireStream(b.Name)
	if err != nil {
		return s.refuse(w, r, err)
	}
	defer release()
	q := r.URL.Query()
	f := streamFilter{
		simulated:    q.Get("simulated") == "true",
		scopes:       splitList(q["scopes"]),
		origins:      splitList(q["origins"]),
		containing:   splitList(q["scenarios_containing"]),
		notContainig: splitList(q["scenarios_not_containing"]),
	}
	if len(f.scopes) == 0 {
		f.scopes = []string{"ip", "range"}
	}
	startup := q.Get("startup") == "true"
	if _, err := s.svc.Expire(r.Context()); err != nil {
		return err
	}
	pw := s.newPageWriter(w, r)
	if startup {
		if err := pw.holdBulk(s.limits().bulk); err != nil {
			return s.refuse(w, r, err)
		}
	}
	now := s.Now()
	w.Header().Set("Content-Type", "application/json")
	var buf []byte
	state := 0 // 0 nothing written, 1 in "new", 2 in "deleted"
	first := true
	pages := 0
	seq, err := s.st.Stream(r.Context(), b.LastSeq, startup, now, 0, func(c store.Change, recs []store.Record) error {
		// A delta longer than a page is as large a response as a startup.
		if pages++; pages > 1 {
			if err := pw.holdBulk(s.limits().bulk); err != nil {
				return err
			}
		}
		if err := pw.page(); err != nil {
			return err
		}
		for _, rec := range recs {
			if !f.match(rec.Decision) {
				continue
			}
			if state == 0 {
				pw.writeString(`{"new":[`)
				state = 1
			}
			if c == store.Deleted && state == 1 {
				pw.writeString(`],"deleted":[`)
				state, first = 2, true
			}
			if !first {
				pw.writeString(",")
			}
			first = false
			buf = appendLAPI(buf[:0], rec.Decision, now)
			pw.write(buf)
		}
		return pw.err
	})
	if err != nil {
		return pw.fail(w, err)
	}
	switch state {
	case 0:
		pw.writeString(`{"new":[],"deleted":[]}`)
	case 1:
		pw.writeString(`],"deleted":[]}`)
	case 2:
		pw.writeString(`]}`)
	}
	if !pw.finish() {
		return nil
	}
	return s.st.BouncerPulled(context.WithoutCancel(r.Context()), b.Name, seq, now, remoteIP(r), r.UserAgent())
}

// narrow reports whether f selects by address or value, a lookup of a few
// rows rather than a listing.
func narrow(f store.Filter) bool {
	return f.ID != 0 || f.IP.IsValid() || f.Range.IsValid() || f.Value != ""
}

// getDecisions is GET /v1/decisions: the active decisions matching ip,
// range, scope, value and type; null when none, as CrowdSec answers.
// Written as encoding/json writes the list, from the store a page at a
// time: an unread response holds a page, never the whole list.
func (s *Server) getDecisions(w http.ResponseWriter, r *http.Request) error {
	b, err := s.auth(r)
	if err != nil {
		return err
	}
	f, err := filterFromQuery(r, false)
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	now := s.Now()
	withSimulated := r.URL.Query().Get("simulated") == "true"
	if now.Sub(b.LastSeen) > time.Minute {
		s.st.BouncerPulled(r.Context(), b.Name, 0, now, remoteIP(r), r.UserAgent())
	}
	var buf []byte
	return s.writeList(w, r, f, s.limits().bulk, "null\n", func(rec store.Record) ([]byte, error) {
		// A bouncer has no field for ports: it would ban every port.
		if rec.Simulated && !withSimulated || rec.PortScoped() {
			return nil, nil
		}
		buf = appendLAPI(buf[:0], rec.Decision, now)
		return buf, nil
	})
}

// writeList writes the decisions f selects as a JSON array, element by
// element as encode gives them (nil skips one), or empty when there are
// none. A listing, or a lookup longer than a page, holds a slot of sem.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, f store.Filter, sem chan struct{}, empty string, encode func(store.Record) ([]byte, error)) error {
	pw := s.newPageWriter(w, r)
	if !narrow(f) && (f.Limit == 0 || f.Limit > store.DefaultPage) {
		if err := pw.holdBulk(sem); err != nil {
			return s.refuse(w, r, err)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	n, pages := 0, 0
	err := s.st.ListPages(r.Context(), f, 0, func(recs []store.Record) error {
		if pages++; pages > 1 {
			if err := pw.holdBulk(sem); err != nil {
				return err
			}
		}
		if err := pw.page(); err != nil {
			return err
		}
		for _, rec := range recs {
			b, err := encode(rec)
			if err != nil {
				return err
			}
			if b == nil {
				continue
			}
			if n == 0 {
				pw.writeString("[")
			} else {
				pw.writeString(",")
			}
			pw.write(b)
			n++
		}
		return pw.err
	})
	if err != nil {
		return pw.fail(w, err)
	}
	if n == 0 {
		pw.writeString(empty)
	} else {
		pw.writeString("]\n")
	}
	pw.finish()
	return nil
}

// filterFromQuery reads decision filters. admin adds the admin-only ones.
func filterFromQuery(r *http.Request, admin bool) (store.Filter, error) {
	q := r.URL.Query()
	var f store.Filter
	if v := q.Get("ip"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return f, badRequest("ip %q: want an IP address", v)
		}
		f.IP = a.Unmap()
	}
	if v := q.Get("range"); v != "" {
		p, err := parsePrefixParam(v)
		if err != nil {
			return f, badRequest("range %s", err)
		}
		f.Range = p
	}
	f.Scope, f.Type = q.Get("scope"), q.Get("type")
	if v := q.Get("value"); v != "" {
		if p, err := model.ParseValue(v); err == nil {
			v = model.ValueString(p)
		} else if g, err := model.ParseGeo(f.Scope, v); err == nil {
			v = g.Value
		}
		f.Value = v
	}
	for _, s := range []string{f.Scope, f.Type, f.Value} {
		if len(s) > 256 {
			return f, badRequest("filter value too long")
		}
	}
	if !admin {
		return f, nil
	}
	f.Origin, f.Scenario = q.Get("origin"), q.Get("scenario")
	if v := q.Get("id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return f, badRequest("id %q: want a positive integer", v)
		}
		f.ID = id
	}
	f.History = q.Get("history") == "true"
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, badRequest("limit %q: want a non-negative integer", v)
		}
		f.Limit = n
	}
	return f, nil
}

// TotalCountHeader carries, on a decision listing, how many decisions the
// filters select whatever the limit, so a capped listing can say what it
// left out while its body stays a plain JSON array.
const TotalCountHeader = "X-Total-Count"

func (s *Server) listDecisions(w http.ResponseWriter, r *http.Request) error {
	f, err := filterFromQuery(r, true)
	if err != nil {
		return err
	}
	// since selects by creation, in the store's query; a listing only,
	// so that a delete cannot be narrowed (or, with all=true, widened) by it.
	if v := r.URL.Query().Get("since"); v != "" {
		d, forever, err := model.ParseDuration(v)
		if err != nil || forever {
			return badRequest("since %q: want a duration such as 2h or 7d", v)
		}
		f.Since = s.Now().Add(-d)
	}
	total, err := s.st.CountMatching(r.Context(), f)
	if err != nil {
		return err
	}
	w.Header().Set(TotalCountHeader, strconv.Itoa(total))
	return s.writeList(w, r, f, s.limits().admin, "[]\n", func(rec store.Record) ([]byte, error) {
		return json.Marshal(fromRecord(rec))
	})
}

func (s *Server) addDecisions(w http.ResponseWriter, r *http.Request) error {
	origin := model.OriginAPI
	if r.URL.Query().Get("origin") == string(model.OriginCLI) {
		origin = model.OriginCLI
	}
	ds, err := DecodeAddDecisions(r.Body, origin, s.Now())
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("%v", err)
	}
	if err := s.svc.Add(r.Context(), ds); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, fromModels(ds))
	return nil
}

func (s *Server) deleteDecisions(w http.ResponseWriter, r *http.Request) error {
	f, err := filterFromQuery(r, true)
	if err != nil {
		return err
	}
	var ds []model.Decision
	if r.URL.Query().Get("all") == "true" {
		if !f.Empty() {
			return badRequest("all=true takes no other filter")
		}
		ds, err = s.svc.DeleteAll(r.Context())
	} else {
		ds, err = s.svc.Delete(r.Context(), f)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DeleteResponse{Deleted: len(ds), Decisions: fromModels(ds)})
	return nil
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.AlertFilter{Scenario: q.Get("scenario"), Value: q.Get("value")}
	if v := q.Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return badRequest("since %q: want a duration such as 24h", v)
		}
		f.Since = s.Now().Add(-d)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100000 {
			return badRequest("limit %q: want 0 to 100000", v)
		}
		f.Limit = n
	}
	recs, err := s.st.ListAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]Alert, 0, len(recs))
	for _, rec := range recs {
		out = append(out, fromAlert(rec, false))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return badRequest("alert id %q: want a positive integer", r.PathValue("id"))
	}
	rec, err := s.st.GetAlert(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fromAlert(rec, true))
	return nil
}

func (s *Server) listBouncers(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.bouncers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, bs)
	return nil
}

func (s *Server) bouncers(ctx context.Context) ([]Bouncer, error) {
	bs, err := s.st.ListBouncers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Bouncer, 0, len(bs))
	for _, b := range bs {
		out = append(out, Bouncer{Name: b.Name, CreatedAt: b.Created, LastSeen: b.LastSeen, LastIP: b.LastIP, UserAgent: b.UserAgent})
	}
	return out, nil
}

func (s *Server) addBouncer(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(r.Body, &req); err != nil {
		return badRequest("%v", err)
	}
	if !validName(req.Name) {
		return badRequest("bouncer name %q: want 1 to 128 letters, digits, '.', '-' or '_'", req.Name)
	}
	key, err := s.st.AddBouncer(r.Context(), req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, NewBouncer{Name: req.Name, Key: key})
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '@') {
			return false
		}
	}
	return true
}

func (s *Server) deleteBouncer(w http.ResponseWriter, r *http.Request) error {
	if err := s.st.DeleteBouncer(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listAllow(w http.ResponseWriter, r *http.Request) error {
	out := s.svc.ListAllow()
	if out == nil {
		out = []decision.AllowEntry{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) addAllow(w http.ResponseWriter, r *http.Request) error {
	var req AllowRequest
	if err := decodeJSON(r.Body, &req); err != nil {
		return badRequest("%v", err)
	}
	p, err := parsePrefixParam(req.Value)
	if err != nil {
		return badRequest("allowlist value %s", err)
	}
	lifted, err := s.svc.AddAllow(r.Context(), p, req.Reason, req.AllowWide)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, AllowResponse{
		Entry:  decision.AllowEntry{Value: p, Reason: req.Reason, Created: s.Now()},
		Lifted: fromModels(lifted),
	})
	return nil
}

func (s *Server) deleteAllow(w http.ResponseWriter, r *http.Request) error {
	p, err := parsePrefixParam(r.URL.Query().Get("value"))
	if err != nil {
		return badRequest("allowlist value %s", err)
	}
	if err := s.svc.DeleteAllow(r.Context(), p); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) error {
	var st Status
	if s.status != nil {
		var err error
		if st, err = s.status(r.Context()); err != nil {
			return err
		}
	}
	counts, err := s.st.Counts(r.Context())
	if err != nil {
		return err
	}
	st.Store = counts
	st.Service = s.svc.Stats()
	if st.Counters == nil {
		st.Counters = map[string]int64{}
	}
	as := s.Stats()
	st.Counters["api_refused"] = as.Refused
	st.Counters["api_write_timeouts"] = as.WriteTimeouts
	st.Counters["api_aborted"] = as.Aborted
	if st.Bouncers, err = s.bouncers(r.Context()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	el := s.ErrorLog
	if el == nil {
		el = log.New(discard{}, "", 0)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Long enough for a startup stream of millions of decisions.
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       el,
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Serve serves h on ln until ctx ends, then shuts down gracefully (in
// flight requests get five seconds).
func (s *Server) Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := s.httpServer(h)
	srv.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// ServeTCP serves the bouncer endpoints on addr until ctx ends.
func (s *Server) ServeTCP(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	return s.Serve(ctx, ln, s.BouncerHandler())
}

// ServeUnix serves the admin endpoints on the unix socket at path until
// ctx ends, and removes the socket afterwards.
func (s *Server) ServeUnix(ctx context.Context, path string) error {
	ln, err := ListenUnix(path)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	return s.Serve(ctx, ln, s.AdminHandler())
}

// ListenUnix creates the admin socket: its directory 0750, the socket 0660,
// both group moat when that group exists, so members of moat can use the
// CLI without root. A stale socket from a dead daemon is replaced; a live
// one is an error.
func ListenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	gid := -1
	if g, err := user.LookupGroup(SocketGroup); err == nil {
		if n, err := strconv.Atoi(g.Gid); err == nil {
			gid = n
		}
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("api socket: %w", err)
		}
		if gid >= 0 {
			os.Chown(dir, -1, gid)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("api socket %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s: another daemon is listening", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("api socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api socket %s: remove stale socket: %w", path, err)
		}
	}
	// Not umask: it is process-wide and would race other goroutines
	// creating files. Between bind and chmod the 0750 directory guards it.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("api socket: %w", err)
		}
	}
	return ln, nil
}
