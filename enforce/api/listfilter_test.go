package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"github.com/moatsec/moat/internal/model"
)

// listValues lists decisions through the admin API and returns their
// values, sorted, and the total the API counted.
func listValues(t *testing.T, f *fixture, q url.Values) ([]string, string) {
	t.Helper()
	resp, err := http.Get(f.admin.URL + "/v1/admin/decisions?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", q.Encode(), resp.StatusCode)
	}
	var ds []Decision
	if err := json.NewDecoder(resp.Body).Decode(&ds); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ds {
		out = append(out, d.Value)
	}
	slices.Sort(out)
	return out, resp.Header.Get(TotalCountHeader)
}

func TestListFilters(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	add := func(value string, origin model.Origin, scenario string) {
		t.Helper()
		p, _ := model.ParseValue(value)
		ds := []model.Decision{{Value: p, Type: "ban", Origin: origin, Scenario: scenario, Until: time.Now().Add(time.Hour)}}
		if err := f.svc.Add(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	add("198.18.10.1", model.OriginLocal, "crowdsecurity/ssh-bf")
	add("198.18.10.2", model.OriginCLI, "")
	// The creation times that since splits on; the wall clock is what the
	// store records, so step past its granularity.
	time.Sleep(5 * time.Millisecond)
	split := time.Now()
	time.Sleep(5 * time.Millisecond)
	add("198.18.10.3", model.OriginLocal, "crowdsecurity/http-probing")
	add("198.18.10.4", model.OriginLocal, "crowdsecurity/ssh-slow-bf")
	add("198.18.10.5", model.OriginCommunity, "crowdsecurity/ssh-bf")
	// since=2h counts back from the server's clock: two hours after split.
	f.srv.Now = func() time.Time { return split.Add(2 * time.Hour) }

	for _, tc := range []struct {
		name  string
		q     url.Values
		want  []string
		total string
	}{
		{"origin", url.Values{"origin": {"local"}}, []string{"198.18.10.1", "198.18.10.3", "198.18.10.4"}, "3"},
		{"scenario substring", url.Values{"scenario": {"ssh"}}, []string{"198.18.10.1", "198.18.10.4", "198.18.10.5"}, "3"},
		{"since", url.Values{"since": {"2h"}}, []string{"198.18.10.3", "198.18.10.4", "198.18.10.5"}, "3"},
		{"origin, scenario and since", url.Values{"origin": {"local"}, "scenario": {"ssh"}, "since": {"2h"}}, []string{"198.18.10.4"}, "1"},
		{"since in days reaches all", url.Values{"since": {"1d"}}, []string{"198.18.10.1", "198.18.10.2", "198.18.10.3", "198.18.10.4", "198.18.10.5"}, "5"},
		{"limit keeps the total", url.Values{"origin": {"local"}, "limit": {"1"}}, []string{"198.18.10.4"}, "3"},
	} {
		got, total := listValues(t, f, tc.q)
		if !slices.Equal(got, tc.want) || total != tc.total {
			t.Errorf("%s: got %v (total %s), want %v (total %s)", tc.name, got, total, tc.want, tc.total)
		}
	}
	for _, bad := range []string{"soon", "forever", "-1h"} {
		resp, err := http.Get(f.admin.URL + "/v1/admin/decisions?since=" + url.QueryEscape(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("since=%s: status %d, want 400", bad, resp.StatusCode)
		}
	}
	// since narrows listings only: a delete with nothing else is refused,
	// and with all=true it cannot be mistaken for a filter.
	req, _ := http.NewRequest(http.MethodDelete, f.admin.URL+"/v1/admin/decisions?since=1h", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("delete since=1h alone: status %d, want 400", resp.StatusCode)
	}
}

func TestForeverThroughTheAPI(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	body := `{"decisions":[{"value":"198.18.11.1","duration":"forever","reason":"known bad"},{"value":"198.18.11.2","duration":"7d"}]}`
	resp, err := http.Post(f.admin.URL+"/v1/admin/decisions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var added []Decision
	err = json.NewDecoder(resp.Body).Decode(&added)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || len(added) != 2 {
		t.Fatalf("add: %d %+v %v", resp.StatusCode, added, err)
	}
	if !added[0].Forever || !added[0].Until.IsZero() {
		t.Errorf("forever decision: %+v", added[0])
	}
	if added[1].Forever || time.Until(added[1].Until) < 6*24*time.Hour {
		t.Errorf("7d decision: %+v", added[1])
	}
	f.enf.mu.Lock()
	held := f.enf.held[added[0].ID]
	f.enf.mu.Unlock()
	if !held.Until.IsZero() {
		t.Errorf("the enforcer got an expiry for a forever ban: %+v", held)
	}
	// Expiry passes and retention, long after: the forever ban stays.
	later := time.Now().Add(20 * 365 * 24 * time.Hour)
	if _, err := f.st.Expire(ctx, later); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Prune(ctx, later); err != nil {
		t.Fatal(err)
	}
	active, err := f.st.Active(ctx, later)
	if err != nil || len(active) != 1 || active[0].ID != added[0].ID {
		t.Fatalf("active after expiry passes: %+v, %v", active, err)
	}
	recs, err := f.st.ListDecisions(ctx, store.Filter{ID: added[0].ID})
	if err != nil || len(recs) != 1 || !recs[0].Until.IsZero() {
		t.Fatalf("listed: %+v, %v", recs, err)
	}
}
