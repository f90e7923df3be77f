package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moatsec/moat/enforce/store"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

const testEnrol = "enrol-0123456789abcdef"

// machineFixture is a fixture with the server role on, served on mach.
type machineFixture struct {
	*fixture
	mach *httptest.Server
}

func newMachineFixture(t *testing.T) *machineFixture {
	t.Helper()
	f := newFixture(t)
	cfg := MachineConfig{Store: f.st, Secret: testSecret, TokenLifetime: time.Hour, EnrolmentToken: testEnrol, Simulated: []string{"crowdsecurity/simulated"}}
	if err := f.srv.EnableMachines(cfg); err != nil {
		t.Fatal(err)
	}
	m := &machineFixture{fixture: f, mach: httptest.NewServer(f.srv.MachineHandler())}
	t.Cleanup(m.mach.Close)
	return m
}

// call sends a request with an optional bearer token and returns the
// status and body.
func (m *machineFixture) call(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, m.mach.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// login registers id approved (if new) and returns its token.
func (m *machineFixture) login(t *testing.T, id string) string {
	t.Helper()
	if _, err := m.st.GetMachine(context.Background(), id); err != nil {
		if err := m.st.AddMachine(context.Background(), id, "secret-"+id, true, ""); err != nil {
			t.Fatal(err)
		}
	}
	code, body := m.call(t, "POST", "/v1/watchers/login", "", `{"machine_id":"`+id+`","password":"secret-`+id+`","scenarios":["crowdsecurity/ssh-bf"]}`)
	if code != http.StatusOK {
		t.Fatalf("login %s: %d %s", id, code, body)
	}
	var lr LoginResponse
	if err := json.Unmarshal(body, &lr); err != nil || lr.Token == "" || lr.Code != 200 {
		t.Fatalf("login answer %s: %v", body, err)
	}
	if exp, err := time.Parse(time.RFC3339, lr.Expire); err != nil || exp.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("login expire %q: %v", lr.Expire, err)
	}
	return lr.Token
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// algNone is a token with alg "none" and no signature, built by hand.
func algNone(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(claims) + "."
}

const sshAlert = `[{"scenario":"crowdsecurity/ssh-bf","scenario_hash":"h","scenario_version":"0.1","message":"Ip 192.0.2.10 performed 'crowdsecurity/ssh-bf' (6 events over 2s)","events_count":6,"capacity":5,"leakspeed":"10s","simulated":false,"remediation":true,"start_at":"2026-12-07T03:00:00Z","stop_at":"2026-12-07T03:00:02Z","source":{"scope":"Ip","value":"192.0.2.10","ip":"192.0.2.10"},"events":[{"timestamp":"2026-12-07T03:00:00Z","meta":[{"key":"target_user","value":"root"}]}],"meta":[{"key":"service","value":"ssh"}],"labels":null}]`

func TestMachineRegisterAndLogin(t *testing.T) {
	m := newMachineFixture(t)
	if err := m.st.AddMachine(context.Background(), "taken", "password1", true, ""); err != nil {
		t.Fatal(err)
	}
	if err := m.st.AddMachine(context.Background(), "waiting", "password1", false, ""); err != nil {
		t.Fatal(err)
	}
	big := `{"machine_id":"x","password":"` + strings.Repeat("a", MaxBodyBytes) + `"}`
	for _, tc := range []struct {
		name, path, body string
		code             int
		msg              string
	}{
		{"register", "/v1/watchers", `{"machine_id":"new1","password":"pw"}`, 201, ""},
		{"register with the enrolment token", "/v1/watchers", `{"machine_id":"new2","password":"pw","registration_token":"` + testEnrol + `"}`, 201, ""},
		{"register with a wrong token", "/v1/watchers", `{"machine_id":"new3","password":"pw","registration_token":"nope"}`, 403, "registration token refused"},
		{"register twice", "/v1/watchers", `{"machine_id":"taken","password":"pw"}`, 409, "already exists"},
		{"register malformed", "/v1/watchers", `{"machine_id":`, 400, "malformed JSON"},
		{"register trailing", "/v1/watchers", `{"machine_id":"a","password":"b"} {}`, 400, "trailing"},
		{"register no id", "/v1/watchers", `{"password":"pw"}`, 400, "machine_id"},
		{"register bad id", "/v1/watchers", `{"machine_id":"a b","password":"pw"}`, 400, "machine_id"},
		{"register no password", "/v1/watchers", `{"machine_id":"new4"}`, 400, "password"},
		{"register long password", "/v1/watchers", `{"machine_id":"new5","password":"` + strings.Repeat("p", 73) + `"}`, 400, "password"},
		{"register oversized", "/v1/watchers", big, 413, "too large"},
		{"login wrong password", "/v1/watchers/login", `{"machine_id":"taken","password":"nope"}`, 401, "wrong machine id or password"},
		{"login unknown machine", "/v1/watchers/login", `{"machine_id":"ghost","password":"password1"}`, 401, "wrong machine id or password"},
		{"login unapproved", "/v1/watchers/login", `{"machine_id":"waiting","password":"password1"}`, 403, "not approved"},
		{"login malformed", "/v1/watchers/login", `[1,2`, 400, "malformed JSON"},
		{"login ok", "/v1/watchers/login", `{"machine_id":"taken","password":"password1","scenarios":["a/b"]}`, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := m.call(t, "POST", tc.path, "", tc.body)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
			if tc.msg != "" {
				var eb errorBody
				if err := json.Unmarshal(body, &eb); err != nil || !strings.Contains(eb.Message, tc.msg) {
					t.Fatalf("body %s: want a JSON message containing %q", body, tc.msg)
				}
			}
		})
	}
	for id, approved := range map[string]bool{"new1": false, "new2": true} {
		mc, err := m.st.GetMachine(context.Background(), id)
		if err != nil || mc.Approved != approved {
			t.Errorf("machine %s: %+v, %v: want approved=%v", id, mc, err, approved)
		}
	}
	if _, err := m.st.GetMachine(context.Background(), "new3"); err == nil {
		t.Errorf("a refused registration stored its machine")
	}
}

func TestMachineTokens(t *testing.T) {
	m := newMachineFixture(t)
	good := m.login(t, "agent")
	gone := m.login(t, "gone")
	if err := m.st.DeleteMachine(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(id string, exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"id": id, "exp": exp.Unix(), "orig_iat": now.Unix()}
	}
	for _, tc := range []struct {
		name, token string
		code        int
		msg         string
	}{
		{"valid", good, 200, ""},
		{"no token", "", 401, "Bearer"},
		{"garbage", "not.a.token", 401, "invalid token"},
		{"forged signature", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims("agent", now.Add(time.Hour))), 401, "invalid token"},
		{"alg none", algNone(map[string]any{"id": "agent", "exp": now.Add(time.Hour).Unix()}), 401, "invalid token"},
		{"HS512 with the right secret", sign(t, jwt.SigningMethodHS512, testSecret, claims("agent", now.Add(time.Hour))), 401, "invalid token"},
		{"expired", sign(t, jwt.SigningMethodHS256, testSecret, claims("agent", now.Add(-time.Minute))), 401, "expired"},
		{"no expiry", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"id": "agent"}), 401, "invalid token"},
		{"no id", sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), 401, "invalid token"},
		{"deleted machine", gone, 401, "not registered"},
		{"unknown machine", sign(t, jwt.SigningMethodHS256, testSecret, claims("ghost", now.Add(time.Hour))), 401, "not registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := m.call(t, "GET", "/v1/heartbeat", tc.token, "")
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
			if tc.msg != "" && !strings.Contains(string(body), tc.msg) {
				t.Fatalf("body %s: want %q", body, tc.msg)
			}
		})
	}
	mc, _ := m.st.GetMachine(context.Background(), "agent")
	if mc.LastHeartbeat.IsZero() || mc.LastLogin.IsZero() {
		t.Errorf("machine after login and heartbeat: %+v", mc)
	}
	// Pushes without a valid token change nothing.
	code, _ := m.call(t, "POST", "/v1/alerts", algNone(map[string]any{"id": "agent", "exp": now.Add(time.Hour).Unix()}), sshAlert)
	if recs, _ := m.st.ListAlerts(context.Background(), store.AlertFilter{}); code != 401 || len(recs) != 0 {
		t.Fatalf("push with alg none: %d, %d alerts stored", code, len(recs))
	}
}

func TestMachinePushAlerts(t *testing.T) {
	m := newMachineFixture(t)
	tok := m.login(t, "agent")
	withDecision := strings.Replace(sshAlert, `"labels":null`, `"decisions":[{"duration":"1h","origin":"cscli","scenario":"manual","scope":"Ip","type":"ban","value":"192.0.2.20"}]`, 1)
	withDecision = strings.Replace(withDecision, `"192.0.2.10"`, `"192.0.2.20"`, -1)
	for _, tc := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"malformed", `[{"scenario":`, 400, "malformed JSON"},
		{"not an array", `{"scenario":"x"}`, 400, "malformed JSON"},
		{"empty", `[]`, 400, "no alerts"},
		{"null alert", `[null]`, 400, "null alert"},
		{"no scenario", strings.Replace(sshAlert, `"scenario":"crowdsecurity/ssh-bf",`, "", 1), 400, "no scenario"},
		{"no source", `[{"scenario":"a/b"}]`, 400, "no source"},
		{"bad source", strings.Replace(sshAlert, `"value":"192.0.2.10"`, `"value":"999.1.1.1"`, 1), 400, "want an IP address"},
		{"second alert bad", "[" + sshAlert[1:len(sshAlert)-1] + `,{"scenario":"a/b","source":{"scope":"Ip","value":"x"}}]`, 400, "alert 1"},
		{"decision bad value", strings.Replace(withDecision, `"value":"192.0.2.20"}]`, `"value":"nope"}]`, 1), 400, "decision 0"},
		{"decision bad duration", strings.Replace(withDecision, `"duration":"1h"`, `"duration":"forever"`, 1), 400, "duration"},
		{"decision bad origin", strings.Replace(withDecision, `"origin":"cscli"`, `"origin":"me"`, 1), 400, "origin"},
		{"decision uppercase type", strings.Replace(withDecision, `"type":"ban"`, `"type":"BAN"`, 1), 400, "type"},
		{"oversized", "[" + strings.Repeat(sshAlert[1:len(sshAlert)-1]+",", 3*MaxBodyBytes/len(sshAlert)) + sshAlert[1:], 413, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := m.call(t, "POST", "/v1/alerts", tok, tc.body)
			if code != tc.code || !strings.Contains(string(body), tc.msg) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.code, tc.msg)
			}
			if recs, _ := m.st.ListAlerts(context.Background(), store.AlertFilter{}); len(recs) != 0 {
				t.Fatalf("a refused push stored %d alerts", len(recs))
			}
		})
	}

	// Without decisions: the profiles decide, origin machine.
	code, body := m.call(t, "POST", "/v1/alerts", tok, sshAlert)
	var ids []string
	if code != 201 || json.Unmarshal(body, &ids) != nil || len(ids) != 1 {
		t.Fatalf("push: %d %s", code, body)
	}
	recs, err := m.st.ListDecisions(context.Background(), store.Filter{Value: "192.0.2.10"})
	if err != nil || len(recs) != 1 || recs[0].Origin != "machine" || recs[0].Scenario != "crowdsecurity/ssh-bf" || ids[0] != itoa(recs[0].AlertID) {
		t.Fatalf("decisions after push: %+v, %v (ids %v)", recs, err, ids)
	}
	if _, ok := m.enf.held[recs[0].ID]; !ok {
		t.Fatal("the pushed alert's ban is not enforced")
	}
	// With a cscli decision: taken as given, origin cli.
	if code, body := m.call(t, "POST", "/v1/alerts", tok, withDecision); code != 201 {
		t.Fatalf("push with decision: %d %s", code, body)
	}
	recs, _ = m.st.ListDecisions(context.Background(), store.Filter{Value: "192.0.2.20"})
	if len(recs) != 1 || recs[0].Origin != "cli" || recs[0].Until.Sub(recs[0].Created) > time.Hour+time.Second {
		t.Fatalf("cscli decision: %+v", recs)
	}
	// On an allowlisted source: the alert is stored, no decision.
	allowed := strings.Replace(sshAlert, `192.0.2.10`, `198.18.200.5`, -1)
	if code, body := m.call(t, "POST", "/v1/alerts", tok, allowed); code != 201 {
		t.Fatalf("push allowlisted: %d %s", code, body)
	}
	if recs, _ := m.st.ListDecisions(context.Background(), store.Filter{Value: "198.18.200.5"}); len(recs) != 0 {
		t.Fatalf("allowlisted source got decisions: %+v", recs)
	}
	// A scenario the server simulates: stored, never enforced.
	sim := strings.Replace(strings.Replace(sshAlert, `192.0.2.10`, `192.0.2.40`, -1), `"crowdsecurity/ssh-bf"`, `"crowdsecurity/simulated"`, 1)
	if code, body := m.call(t, "POST", "/v1/alerts", tok, sim); code != 201 {
		t.Fatalf("push simulated: %d %s", code, body)
	}
	recs, _ = m.st.ListDecisions(context.Background(), store.Filter{Value: "192.0.2.40"})
	if len(recs) != 1 || !recs[0].Simulated {
		t.Fatalf("simulated scenario's decisions: %+v", recs)
	}
	if _, held := m.enf.held[recs[0].ID]; held {
		t.Fatal("a simulated decision was enforced")
	}

	// Listing, with the filters agents and cscli use.
	for _, tc := range []struct {
		query string
		code  int
		n     int
	}{
		{"", 200, 4},
		{"?ip=192.0.2.10", 200, 1},
		{"?scope=ip&value=192.0.2.20", 200, 1},
		{"?scenario=ssh-bf&limit=2", 200, 2},
		{"?since=1h", 200, 4},
		{"?until=1h", 200, 0},
		{"?has_active_decision=true", 200, 3},
		{"?since=banana", 400, 0},
		{"?limit=-1", 400, 0},
		{"?ip=300.1.1.1", 400, 0},
	} {
		code, body := m.call(t, "GET", "/v1/alerts"+tc.query, tok, "")
		if code != tc.code {
			t.Errorf("GET /v1/alerts%s: %d %s", tc.query, code, body)
			continue
		}
		if code != 200 {
			continue
		}
		var got []lapiAlert
		if err := json.Unmarshal(body, &got); err != nil || len(got) != tc.n {
			t.Errorf("GET /v1/alerts%s: %d alerts (%v), want %d: %s", tc.query, len(got), err, tc.n, body)
		}
	}
	code, body = m.call(t, "GET", "/v1/alerts?ip=192.0.2.10", tok, "")
	var got []lapiAlert
	json.Unmarshal(body, &got)
	if code != 200 || len(got) != 1 || len(got[0].Decisions) != 1 || str(got[0].Decisions[0].Origin) != "crowdsec" || got[0].MachineID != "agent" {
		t.Fatalf("listed alert: %s", body)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestMachineDeleteDecisions(t *testing.T) {
	m := newMachineFixture(t)
	tok := m.login(t, "agent")
	d1 := m.add(t, "192.0.2.30", time.Hour, "crowdsecurity/ssh-bf")
	m.add(t, "192.0.2.31", time.Hour, "crowdsecurity/http-probing")
	m.add(t, "192.0.2.32", time.Hour, "crowdsecurity/ssh-bf")
	for _, tc := range []struct {
		name, path string
		code       int
		n          string
	}{
		{"no filter", "/v1/decisions", 400, ""},
		{"bad ip", "/v1/decisions?ip=nope", 400, ""},
		{"bad id", "/v1/decisions/abc", 400, ""},
		{"none match", "/v1/decisions?ip=192.0.2.99", 200, "0"},
		{"by id", "/v1/decisions/" + itoa(d1.ID), 200, "1"},
		{"by scenario", "/v1/decisions?scenario=http-probing", 200, "1"},
		{"by ip", "/v1/decisions?ip=192.0.2.32", 200, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := m.call(t, "DELETE", tc.path, tok, "")
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
			if tc.n != "" {
				var r DeleteDecisionResponse
				if err := json.Unmarshal(body, &r); err != nil || r.NbDeleted != tc.n {
					t.Fatalf("body %s: want nbDeleted %q", body, tc.n)
				}
			}
		})
	}
	if code, _ := m.call(t, "DELETE", "/v1/decisions?ip=192.0.2.32", "", ""); code != 401 {
		t.Fatalf("delete without a token: %d", code)
	}
}

func TestMachineAdmin(t *testing.T) {
	m := newMachineFixture(t)
	call := func(method, path, body string) (int, []byte) {
		req, _ := http.NewRequest(method, m.admin.URL+path, bytes.NewReader([]byte(body)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	m.call(t, "POST", "/v1/watchers", "", `{"machine_id":"self","password":"pw"}`)
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/v1/admin/machines", `{"machine_id":"ops","password":"longenough"}`, 201},
		{"POST", "/v1/admin/machines", `{"machine_id":"ops","password":"longenough"}`, 409},
		{"POST", "/v1/admin/machines", `{"machine_id":"short","password":"x"}`, 400},
		{"POST", "/v1/admin/machines", `{"machine_id":"x","password":"longenough","extra":1}`, 400},
		{"POST", "/v1/admin/machines/self/approve", "", 200},
		{"POST", "/v1/admin/machines/ghost/approve", "", 404},
		{"DELETE", "/v1/admin/machines/ghost", "", 404},
		{"DELETE", "/v1/admin/machines/ops", "", 204},
	} {
		if code, body := call(tc.method, tc.path, tc.body); code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.code)
		}
	}
	code, body := call("GET", "/v1/admin/machines", "")
	var ms []Machine
	if code != 200 || json.Unmarshal(body, &ms) != nil || len(ms) != 1 || ms[0].ID != "self" || !ms[0].Approved {
		t.Fatalf("machines: %d %s", code, body)
	}
	// The role off: the admin endpoints say so.
	f := newFixture(t)
	req, _ := http.NewRequest("GET", f.admin.URL+"/v1/admin/machines", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("machines with the role off: %d", resp.StatusCode)
	}
	// And the machine endpoints are not served.
	lapi := httptest.NewServer(f.srv.MachineHandler())
	defer lapi.Close()
	resp, err = http.Post(lapi.URL+"/v1/watchers", "application/json", strings.NewReader(`{"machine_id":"a","password":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("watchers with the role off: %d", resp.StatusCode)
	}
}

// TestMachineHashingBound: logins and registrations past MaxHashing in
// progress wait BulkWait, then get a 503 telling to retry.
func TestMachineHashingBound(t *testing.T) {
	m := newMachineFixture(t)
	m.srv.BulkWait = 50 * time.Millisecond
	for range MaxHashing {
		m.srv.machines.hashing <- struct{}{}
	}
	for _, path := range []string{"/v1/watchers/login", "/v1/watchers"} {
		code, body := m.call(t, "POST", path, "", `{"machine_id":"x","password":"password1"}`)
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "retry later") {
			t.Errorf("%s with every slot held: %d %s", path, code, body)
		}
	}
	for range MaxHashing {
		<-m.srv.machines.hashing
	}
	if code, body := m.call(t, "POST", "/v1/watchers", "", `{"machine_id":"x","password":"password1"}`); code != http.StatusCreated {
		t.Fatalf("register with slots free: %d %s", code, body)
	}
	if got := m.srv.Stats().Refused; got != 2 {
		t.Errorf("refused counter %d, want 2", got)
	}
}
