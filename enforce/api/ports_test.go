package api

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// A port-scoped decision is added and listed with its ports through the
// admin API, reaches the enforcer with them, and is shown to no CrowdSec
// bouncer: a bouncer has no field for ports and would ban every port.
func TestPortScopedDecisionsAPI(t *testing.T) {
	f := newFixture(t)
	h := f.srv.AdminHandler()
	key := f.bouncerKey(t, "fw")
	for _, tc := range []struct {
		nd   NewDecision
		code int
		want string
	}{
		{NewDecision{Value: "198.18.7.7", Duration: "1h", Ports: "465,25", Protocol: "tcp"}, http.StatusCreated, ""},
		{NewDecision{Value: "198.18.7.8", Duration: "1h"}, http.StatusCreated, ""},
		{NewDecision{Value: "198.18.7.9", Duration: "1h", Protocol: "tcp"}, http.StatusBadRequest, "without ports"},
		{NewDecision{Value: "198.18.7.9", Duration: "1h", Ports: "25", Protocol: "sctp"}, http.StatusBadRequest, "sctp"},
		{NewDecision{Value: "198.18.7.9", Duration: "1h", Ports: "0"}, http.StatusBadRequest, "port numbers"},
	} {
		body, _ := json.Marshal(AddDecisionsRequest{Decisions: []NewDecision{tc.nd}})
		w := serve(h, http.MethodPost, "/v1/admin/decisions", "", body)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("POST %+v: %d %s, want %d with %q", tc.nd, w.Code, w.Body, tc.code, tc.want)
		}
	}

	w := serve(h, http.MethodGet, "/v1/admin/decisions?value=198.18.7.7", "", nil)
	var listed []Decision
	if err := json.Unmarshal(w.Body.Bytes(), &listed); err != nil || len(listed) != 1 {
		t.Fatalf("list: %v %s", err, w.Body)
	}
	if listed[0].Ports != "25,465" || listed[0].Protocol != "tcp" {
		t.Errorf("listed ports %q/%q, want 25,465/tcp", listed[0].Ports, listed[0].Protocol)
	}
	f.enf.mu.Lock()
	held := f.enf.held[listed[0].ID]
	f.enf.mu.Unlock()
	if !slices.Equal(held.Ports, []uint16{25, 465}) || held.Protocol != "tcp" {
		t.Errorf("enforcer got ports %v/%q", held.Ports, held.Protocol)
	}

	if got := values(pull(t, f.lapi.URL, key, true, "").New); !slices.Equal(got, []string{"198.18.7.8"}) {
		t.Errorf("bouncer startup stream %v, want only the plain ban", got)
	}
	for ip, want := range map[string]string{"198.18.7.7": "null", "198.18.7.8": "198.18.7.8"} {
		code, body := get(t, f.lapi.URL, "/v1/decisions?ip="+ip, key)
		if code != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET /v1/decisions?ip=%s: %d %s, want %s", ip, code, body, want)
		}
	}
}
