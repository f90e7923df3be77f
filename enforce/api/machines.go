package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// MachineStore is what the machine endpoints need of the store: the
// CrowdSec agents registered on this server. *store.Store provides it;
// another store (PostgreSQL, for replicas sharing one) only has to
// provide these.
type MachineStore interface {
	AddMachine(ctx context.Context, id, password string, approved bool, ip string) error
	AuthMachine(ctx context.Context, id, password, ip, version string, scenarios []string) (store.Machine, error)
	GetMachine(ctx context.Context, id string) (store.Machine, error)
	ListMachines(ctx context.Context) ([]store.Machine, error)
	ApproveMachine(ctx context.Context, id string) error
	DeleteMachine(ctx context.Context, id string) error
	MachineHeartbeat(ctx context.Context, id string, at time.Time, ip string) error
}

var _ MachineStore = (*store.Store)(nil)

// MachineConfig configures the machine endpoints (the fleet server role).
type MachineConfig struct {
	Store MachineStore
	// Secret signs the login tokens (HS256). Empty: a random one, so
	// tokens do not outlive the process and agents log in again after a
	// restart, as they do when a token expires.
	Secret []byte
	// TokenLifetime is how long a login token is valid; 0 is
	// DefaultTokenLifetime.
	TokenLifetime time.Duration
	// EnrolmentToken, when set, approves at registration a machine that
	// presents it; others wait for an admin's approval.
	EnrolmentToken string
	// Simulated names scenarios (the configuration's simulation list)
	// whose pushed alerts are simulated here too, whatever the machine
	// says: the server's admin decides what its fleet enforces.
	Simulated []string
	// OnAlert, when set, is told of each pushed alert stored and the
	// decisions it took, for the caller to log.
	OnAlert func(machine string, alertID int64, a model.Alert, ds []model.Decision)
}

// DefaultTokenLifetime is CrowdSec's own token lifetime.
const DefaultTokenLifetime = 2 * time.Hour

// machines is the machine endpoints' state.
type machines struct {
	st       MachineStore
	secret   []byte
	lifetime time.Duration
	enrol    string
	sim      map[string]bool
	onAlert  func(machine string, alertID int64, a model.Alert, ds []model.Decision)
	// hashing bounds the bcrypt work of registrations and logins in
	// progress: anyone who reaches the listener can ask for it, and a
	// flood of logins must not take the cores the hot path needs.
	hashing chan struct{}
}

// Bounds of the unauthenticated machine endpoints.
const (
	// MaxHashing is the registrations and logins hashed at once; more
	// wait up to BulkWait, then are answered 503.
	MaxHashing = 4
	// MaxPendingMachines bounds the registered machines no admin
	// approved, so registrations cannot grow the store without end.
	MaxPendingMachines = 1000
)

// hash takes a bcrypt slot; the returned func gives it back.
func (s *Server) hash(w http.ResponseWriter, r *http.Request) (func(), error) {
	release, err := s.acquireBulk(r.Context(), s.machines.hashing)
	if err != nil {
		var le *limitError
		if errors.As(err, &le) {
			le.msg = fmt.Sprintf("too many logins and registrations in progress (at most %d): retry later", MaxHashing)
		}
		return nil, s.refuse(w, r, err)
	}
	return release, nil
}

// EnableMachines turns the machine endpoints on: MachineHandler serves
// them and the admin socket manages machines.
func (s *Server) EnableMachines(cfg MachineConfig) error {
	if cfg.Store == nil {
		return errors.New("machine endpoints: no store")
	}
	m := &machines{st: cfg.Store, secret: cfg.Secret, lifetime: cfg.TokenLifetime, enrol: cfg.EnrolmentToken, sim: map[string]bool{}, hashing: make(chan struct{}, MaxHashing), onAlert: cfg.OnAlert}
	for _, n := range cfg.Simulated {
		m.sim[n] = true
	}
	if len(m.secret) == 0 {
		m.secret = make([]byte, 32)
		if _, err := rand.Read(m.secret); err != nil {
			return fmt.Errorf("machine endpoints: token secret: %w", err)
		}
	}
	if len(m.secret) < 32 {
		return errors.New("machine endpoints: token secret shorter than 32 bytes")
	}
	if m.lifetime <= 0 {
		m.lifetime = DefaultTokenLifetime
	}
	s.machines = m
	return nil
}

// MachineHandler serves the bouncer endpoints and, once EnableMachines
// ran, the CrowdSec LAPI machine endpoints beside them.
func (s *Server) MachineHandler() http.Handler {
	mux := http.NewServeMux()
	s.bouncerRoutes(mux)
	if s.machines != nil {
		mux.Handle("POST /v1/watchers", handle(s.registerMachine))
		mux.Handle("POST /v1/watchers/login", handle(s.loginMachine))
		mux.Handle("POST /v1/alerts", handle(s.machineAuth(s.pushAlerts)))
		mux.Handle("GET /v1/alerts", handle(s.machineAuth(s.machineAlerts)))
		mux.Handle("DELETE /v1/decisions", handle(s.machineAuth(s.machineDeleteDecisions)))
		mux.Handle("DELETE /v1/decisions/{id}", handle(s.machineAuth(s.machineDeleteDecisions)))
		mux.Handle("GET /v1/heartbeat", handle(s.machineAuth(s.heartbeat)))
		mux.Handle("GET "+FleetStreamPath, handle(s.machineAuth(s.fleetStream)))
	}
	mux.HandleFunc("/", notFound)
	return mux
}

var errMachineAuth = &apiError{http.StatusUnauthorized, "wrong machine id or password"}

// registerRequest is CrowdSec's WatcherRegistrationRequest; newer agents
// may add registration_token, which moat takes as the enrolment token.
type registerRequest struct {
	MachineID         string `json:"machine_id"`
	Password          string `json:"password"`
	RegistrationToken string `json:"registration_token,omitempty"`
}

func validMachineID(id string) bool { return validName(id) }

func (s *Server) registerMachine(w http.ResponseWriter, r *http.Request) error {
	var req registerRequest
	if err := decodeLAPI(r, &req); err != nil {
		return err
	}
	if !validMachineID(req.MachineID) {
		return badRequest("machine_id %q: want 1 to 128 letters, digits, '.', '-', '_' or '@'", req.MachineID)
	}
	if req.Password == "" || len(req.Password) > store.MaxPasswordBytes {
		return badRequest("password: want 1 to %d bytes", store.MaxPasswordBytes)
	}
	m := s.machines
	approved := m.enrol != "" && subtle.ConstantTimeCompare([]byte(req.RegistrationToken), []byte(m.enrol)) == 1
	if req.RegistrationToken != "" && !approved {
		return &apiError{http.StatusForbidden, "registration token refused"}
	}
	if !approved {
		ms, err := m.st.ListMachines(r.Context())
		if err != nil {
			return err
		}
		pending := 0
		for _, mc := range ms {
			if !mc.Approved {
				pending++
			}
		}
		if pending >= MaxPendingMachines {
			return &apiError{http.StatusForbidden, fmt.Sprintf("%d machines already wait for approval: approve or delete some (moat machines list) before more register", pending)}
		}
	}
	release, err := s.hash(w, r)
	if err != nil {
		return err
	}
	defer release()
	if err := m.st.AddMachine(r.Context(), req.MachineID, req.Password, approved, remoteIP(r)); err != nil {
		return err
	}
	// 201 approved or not, as CrowdSec answers: an unapproved agent
	// learns it waits for approval when it logs in (403).
	w.WriteHeader(http.StatusCreated)
	return nil
}

// loginRequest is CrowdSec's WatcherAuthRequest.
type loginRequest struct {
	MachineID string   `json:"machine_id"`
	Password  string   `json:"password"`
	Scenarios []string `json:"scenarios"`
}

// LoginResponse is what a login answers, as CrowdSec's LAPI does.
type LoginResponse struct {
	Code   int    `json:"code"`
	Expire string `json:"expire"`
	Token  string `json:"token"`
}

func (s *Server) loginMachine(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decodeLAPI(r, &req); err != nil {
		return err
	}
	if !validMachineID(req.MachineID) || req.Password == "" || len(req.Password) > store.MaxPasswordBytes || len(req.Scenarios) > 10000 {
		return errMachineAuth
	}
	m := s.machines
	release, err := s.hash(w, r)
	if err != nil {
		return err
	}
	defer release()
	mc, err := m.st.AuthMachine(r.Context(), req.MachineID, req.Password, remoteIP(r), r.UserAgent(), req.Scenarios)
	switch {
	case errors.Is(err, store.ErrBadPassword):
		return errMachineAuth
	case errors.Is(err, store.ErrNotApproved):
		return &apiError{http.StatusForbidden, fmt.Sprintf("machine %q is not approved yet: an admin of the server runs moat machines approve %s", req.MachineID, req.MachineID)}
	case err != nil:
		return err
	}
	now := s.Now()
	exp := now.Add(m.lifetime)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"id":       mc.ID,
		"exp":      exp.Unix(),
		"orig_iat": now.Unix(),
		"iat":      now.Unix(),
	})
	signed, err := tok.SignedString(m.secret)
	if err != nil {
		return fmt.Errorf("machine %q: sign token: %w", mc.ID, err)
	}
	writeJSON(w, http.StatusOK, LoginResponse{Code: http.StatusOK, Expire: exp.UTC().Format(time.RFC3339), Token: signed})
	return nil
}

type machineKey struct{}

// machineAuth checks the request's bearer token and that its machine is
// still registered and approved (a deleted machine's token stops at once).
func (s *Server) machineAuth(next func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := s.machineToken(r)
		if err != nil {
			return err
		}
		mc, err := s.machines.st.GetMachine(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) {
			return &apiError{http.StatusUnauthorized, fmt.Sprintf("machine %q is not registered", id)}
		}
		if err != nil {
			return err
		}
		if !mc.Approved {
			return &apiError{http.StatusForbidden, fmt.Sprintf("machine %q is not approved", id)}
		}
		return next(w, r.WithContext(context.WithValue(r.Context(), machineKey{}, mc.ID)))
	}
}

func (s *Server) machineToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || raw == "" || len(raw) > 4096 {
		return "", &apiError{http.StatusUnauthorized, "want an Authorization: Bearer token from POST /v1/watchers/login"}
	}
	var claims jwt.MapClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.machines.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.Now),
	)
	if err != nil {
		msg := "invalid token"
		if errors.Is(err, jwt.ErrTokenExpired) {
			msg = "token expired: log in again"
		}
		return "", &apiError{http.StatusUnauthorized, msg}
	}
	id, _ := claims["id"].(string)
	if !validMachineID(id) {
		return "", &apiError{http.StatusUnauthorized, "invalid token"}
	}
	return id, nil
}

func machineOf(r *http.Request) string {
	id, _ := r.Context().Value(machineKey{}).(string)
	return id
}

// decodeLAPI decodes a request body of the LAPI's machine endpoints.
// Unknown fields are accepted, as CrowdSec's LAPI accepts them: newer
// agents add some.
func decodeLAPI(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("malformed JSON: %v", err)
	}
	if dec.More() {
		return badRequest("malformed JSON: trailing data")
	}
	return nil
}

// pushAlerts is POST /v1/alerts: each alert is stored and becomes
// decisions through the decision service (AddAlert); the answer is the
// stored alerts' IDs, as strings, as CrowdSec answers.
func (s *Server) pushAlerts(w http.ResponseWriter, r *http.Request) error {
	ps, err := decodeAlerts(r.Body, machineOf(r), s.Now())
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return badRequest("%v", err)
	}
	ids, err := s.storePushed(r.Context(), machineOf(r), ps)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, ids)
	return nil
}

// parseSince reads CrowdSec's since/until: a duration back from now.
func parseSince(name, v string, now time.Time) (time.Time, error) {
	d, err := parseLAPIDuration(v)
	if err != nil || d <= 0 {
		return time.Time{}, badRequest("%s %q: want a duration such as 4h or 2d", name, v)
	}
	return now.Add(-d), nil
}

// machineAlerts is GET /v1/alerts with the filters agents and cscli use:
// scope, value (or ip, range), scenario, since, until, limit.
func (s *Server) machineAlerts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	now := s.Now()
	f := store.AlertFilter{Scenario: q.Get("scenario"), Value: q.Get("value"), Scope: q.Get("scope")}
	for _, k := range []string{"ip", "range"} {
		if v := q.Get(k); v != "" {
			p, err := parsePrefixParam(v)
			if err != nil {
				return badRequest("%s %s", k, err)
			}
			f.Value = model.ValueString(p)
		}
	}
	if f.Value != "" {
		if p, err := model.ParseValue(f.Value); err == nil {
			f.Value = model.ValueString(model.Canonical(p))
		}
	}
	switch strings.ToLower(f.Scope) {
	case "ip":
		f.Scope = model.ScopeIP
	case "range":
		f.Scope = model.ScopeRange
	}
	for _, v := range []string{f.Scenario, f.Value, f.Scope} {
		if len(v) > 512 {
			return badRequest("filter value too long")
		}
	}
	var err error
	if v := q.Get("since"); v != "" {
		if f.Since, err = parseSince("since", v, now); err != nil {
			return err
		}
	}
	if v := q.Get("until"); v != "" {
		if f.Until, err = parseSince("until", v, now); err != nil {
			return err
		}
	}
	f.Limit = 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10000 {
			return badRequest("limit %q: want 0 to 10000", v)
		}
		if n > 0 {
			f.Limit = n
		}
	}
	recs, err := s.st.ListAlerts(r.Context(), f)
	if err != nil {
		return err
	}
	// has_active_decision (cscli decisions list asks it) keeps the
	// alerts holding an active decision, with those decisions only. It
	// filters the page the limit cut, so it may return fewer.
	active := q.Get("has_active_decision") == "true"
	out := make([]lapiAlert, 0, len(recs))
	for _, rec := range recs {
		var ds []store.Record
		for _, id := range rec.Decisions {
			err := s.st.ListPages(r.Context(), store.Filter{ID: id, History: !active}, 0, func(rs []store.Record) error {
				for _, d := range rs {
					if !active || d.Deleted.IsZero() && !d.Expired(now) {
						ds = append(ds, d)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if active && len(ds) == 0 {
			continue
		}
		out = append(out, toLAPIAlert(rec, ds, now))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// DeleteDecisionResponse is CrowdSec's answer to a decision delete: the
// count, as a string.
type DeleteDecisionResponse struct {
	NbDeleted string `json:"nbDeleted"`
}

// machineDeleteDecisions is DELETE /v1/decisions (by ip, range, scope,
// value, type, scenario, origin) and DELETE /v1/decisions/{id}. Unlike
// CrowdSec's, no filter is refused, not "delete everything": a machine
// of a fleet must not wipe the fleet's bans by omission.
func (s *Server) machineDeleteDecisions(w http.ResponseWriter, r *http.Request) error {
	f, err := filterFromQuery(r, true)
	if err != nil {
		return err
	}
	f.History, f.Limit = false, 0
	if v := r.PathValue("id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return badRequest("decision id %q: want a positive integer", v)
		}
		f = store.Filter{ID: id}
	}
	if v := r.URL.Query().Get("scenario"); v != "" {
		f.Scenario = v
	}
	ds, err := s.svc.Delete(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DeleteDecisionResponse{NbDeleted: strconv.Itoa(len(ds))})
	return nil
}

// heartbeat is GET /v1/heartbeat: the agent says it is alive.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) error {
	if err := s.machines.st.MachineHeartbeat(r.Context(), machineOf(r), s.Now(), remoteIP(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
