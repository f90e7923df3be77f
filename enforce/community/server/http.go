package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/moatsec/moat/enforce/community/wire"
)

// apiError is an error with the HTTP status it answers.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

var (
	errAuth    = &apiError{http.StatusUnauthorized, "wrong machine_id or password"}
	errLimited = &apiError{http.StatusTooManyRequests, "rate limited: retry later"}
	validID    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// Handler serves the CAPI endpoints under /v2 (CrowdSec 1.4) and /v3.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, v := range []string{"/v2", "/v3"} {
		mux.HandleFunc("POST "+v+"/watchers", s.handle(s.register))
		mux.HandleFunc("POST "+v+"/watchers/login", s.handle(s.login))
		mux.HandleFunc("POST "+v+"/watchers/enroll", s.handle(s.auth(false, s.enroll)))
		mux.HandleFunc("POST "+v+"/signals", s.handle(s.auth(true, s.signals)))
		// Accepted and dropped: the server keeps no usage data.
		// CrowdSec 1.4 posts to metrics/, with the slash.
		metrics := s.handle(s.auth(false, func(w http.ResponseWriter, _ *http.Request, _ string) error {
			writeJSON(w, http.StatusOK, "OK")
			return nil
		}))
		mux.HandleFunc("POST "+v+"/metrics", metrics)
		mux.HandleFunc("POST "+v+"/metrics/", metrics)
	}
	// Not CAPI: a moat host that unregisters leaves, so it can register
	// again under the same pseudonym.
	mux.HandleFunc("DELETE /v3/watchers/self", s.handle(s.auth(false, s.leave)))
	mux.HandleFunc("GET /v2/decisions/stream", s.handle(s.auth(true, s.streamV2)))
	mux.HandleFunc("GET /v3/decisions/stream", s.handle(s.auth(true, s.streamV3)))
	return http.MaxBytesHandler(mux, 8<<20)
}

// handle turns a handler's error into a JSON answer, after the per-network
// request limit.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := func() error {
			if ip := s.clientIP(r); !s.byNet.allow(limitNet(ip), 1, s.cfg.Now()) {
				s.stats.limited.Add(1)
				return errLimited
			}
			return h(w, r)
		}()
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			if s.cfg.OnError != nil {
				s.cfg.OnError(fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err))
			}
			ae = &apiError{http.StatusInternalServerError, "internal error"}
		}
		if ae.code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "10")
		}
		writeJSON(w, ae.code, map[string]string{"message": ae.msg})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		return &apiError{http.StatusBadRequest, "bad request body: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &apiError{http.StatusBadRequest, "bad request body: trailing data"}
	}
	return nil
}

// clientIP is the request's peer, or the first X-Forwarded-For hop when
// configured to trust it.
func (s *Server) clientIP(r *http.Request) netip.Addr {
	if s.cfg.TrustForwardedFor {
		first, _, _ := strings.Cut(r.Header.Get("X-Forwarded-For"), ",")
		if a, err := netip.ParseAddr(strings.TrimSpace(first)); err == nil {
			return a.Unmap()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// limitNet is the request-rate key: the /24 or /64 around ip.
func limitNet(ip netip.Addr) string {
	bits := 24
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return "invalid"
	}
	return p.String()
}

// slot bounds the bcrypt work in progress: anyone can ask for it.
func (s *Server) slot(ctx context.Context) (func(), error) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case s.hashing <- struct{}{}:
		return func() { <-s.hashing }, nil
	case <-t.C:
		return nil, &apiError{http.StatusServiceUnavailable, "too many logins in progress"}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	var c wire.Credentials
	if err := decode(r, &c); err != nil {
		return err
	}
	if !validID.MatchString(c.MachineID) || len(c.Password) < 8 || len(c.Password) > 72 {
		return &apiError{http.StatusBadRequest, "machine_id: 1-64 of [A-Za-z0-9._-]; password: 8-72 bytes"}
	}
	if !s.cfg.Open {
		var pending int
		if err := s.db.QueryRowContext(r.Context(), `SELECT count(*) FROM reporters WHERE enrolled = 0`).Scan(&pending); err != nil {
			return fmt.Errorf("register %s: %w", c.MachineID, err)
		}
		if pending >= s.cfg.MaxPending {
			return &apiError{http.StatusServiceUnavailable, "too many registrations waiting for enrolment: retry later"}
		}
	}
	release, err := s.slot(r.Context())
	if err != nil {
		return err
	}
	defer release()
	h, err := bcrypt.GenerateFromPassword([]byte(c.Password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("register %s: %w", c.MachineID, err)
	}
	res, err := s.db.ExecContext(r.Context(), s.db.q(`INSERT INTO reporters (id, password_hash, enrolled, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
		c.MachineID, string(h), b2i(s.cfg.Open), s.cfg.Now().Unix())
	if err != nil {
		return fmt.Errorf("register %s: %w", c.MachineID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return &apiError{http.StatusConflict, fmt.Sprintf("machine %q already registered", c.MachineID)}
	}
	writeJSON(w, http.StatusCreated, map[string]string{"message": "registered"})
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var c wire.Credentials
	if err := decode(r, &c); err != nil {
		return err
	}
	if !validID.MatchString(c.MachineID) || c.Password == "" || len(c.Password) > 72 || len(c.Scenarios) > 5000 {
		return errAuth
	}
	var hash string
	err := s.db.QueryRowContext(r.Context(), s.db.q(`SELECT password_hash FROM reporters WHERE id = ?`), c.MachineID).Scan(&hash)
	if err != nil {
		if errors.Is(err, sqlNoRows) {
			return errAuth
		}
		return fmt.Errorf("login %s: %w", c.MachineID, err)
	}
	release, err := s.slot(r.Context())
	if err != nil {
		return err
	}
	err = bcrypt.CompareHashAndPassword([]byte(hash), []byte(c.Password))
	release()
	if err != nil {
		return errAuth
	}
	// The scenarios a reporter runs filter what it pulls.
	var scen []string
	for _, sc := range c.Scenarios {
		if sc != "" && len(sc) <= 256 && !strings.ContainsRune(sc, '\n') {
			scen = append(scen, sc)
		}
	}
	if _, err := s.db.ExecContext(r.Context(), s.db.q(`UPDATE reporters SET scenarios = ? WHERE id = ?`), strings.Join(scen, "\n"), c.MachineID); err != nil {
		return fmt.Errorf("login %s: %w", c.MachineID, err)
	}
	now := s.cfg.Now()
	exp := now.Add(s.cfg.TokenLifetime)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"id": c.MachineID, "exp": exp.Unix(), "iat": now.Unix(), "orig_iat": now.Unix()}).SignedString(s.cfg.Secret)
	if err != nil {
		return fmt.Errorf("login %s: sign: %w", c.MachineID, err)
	}
	writeJSON(w, http.StatusOK, wire.LoginResponse{Code: http.StatusOK, Expire: exp.UTC().Format(time.RFC3339), Token: tok})
	return nil
}

// auth checks the bearer token; enrolled requires the reporter to have
// been admitted (enrolment token, or open admission).
func (s *Server) auth(enrolled bool, next func(http.ResponseWriter, *http.Request, string) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || len(raw) > 4096 {
			return &apiError{http.StatusUnauthorized, "want an Authorization: Bearer token from POST /v3/watchers/login"}
		}
		var claims jwt.MapClaims
		_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.cfg.Secret, nil },
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.cfg.Now))
		if err != nil {
			return &apiError{http.StatusUnauthorized, "invalid or expired token: log in again"}
		}
		id, _ := claims["id"].(string)
		var en int
		err = s.db.QueryRowContext(r.Context(), s.db.q(`SELECT enrolled FROM reporters WHERE id = ?`), id).Scan(&en)
		if errors.Is(err, sqlNoRows) {
			return &apiError{http.StatusUnauthorized, "machine not registered"}
		}
		if err != nil {
			return fmt.Errorf("auth %s: %w", id, err)
		}
		if enrolled && en == 0 {
			return &apiError{http.StatusForbidden, "machine not enrolled: present the server's enrolment token (moat community register --token, or cscli console enroll TOKEN)"}
		}
		return next(w, r, id)
	}
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request, id string) error {
	var e wire.Enroll
	if err := decode(r, &e); err != nil {
		return err
	}
	if s.cfg.EnrolmentToken == "" || subtle.ConstantTimeCompare([]byte(e.AttachmentKey), []byte(s.cfg.EnrolmentToken)) != 1 {
		return &apiError{http.StatusForbidden, "wrong enrolment token"}
	}
	if _, err := s.db.ExecContext(r.Context(), s.db.q(`UPDATE reporters SET enrolled = 1 WHERE id = ?`), id); err != nil {
		return fmt.Errorf("enroll %s: %w", id, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "enrolled"})
	return nil
}

// leave deletes the reporter and its reports. Listings it helped make
// stay until they decay: the others' reports made them too.
func (s *Server) leave(w http.ResponseWriter, r *http.Request, id string) error {
	tx, err := s.db.BeginTx(r.Context(), nil)
	if err != nil {
		return fmt.Errorf("leave %s: %w", id, err)
	}
	defer tx.Rollback()
	for _, q := range []string{`DELETE FROM reports WHERE reporter = ?`, `DELETE FROM reporters WHERE id = ?`} {
		if _, err := tx.ExecContext(r.Context(), s.db.q(q), id); err != nil {
			return fmt.Errorf("leave %s: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("leave %s: %w", id, err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "deleted"})
	return nil
}
