package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An allowlist entry wider than the ban limits lifts every ban inside it,
// so the API takes one only with an explicit "allow_wide": true.
func TestAddAllowWidthLimit(t *testing.T) {
	cases := []struct {
		name, body string
		want       int
		// msg lists what a refusal must say: the limit and the override.
		msg []string
	}{
		{"ipv4 everything", `{"value":"0.0.0.0/0","reason":"oops"}`, 400, []string{"0.0.0.0/0", "/8", "allow_wide"}},
		{"ipv6 everything", `{"value":"::/0","reason":"oops"}`, 400, []string{"::/0", "/32", "allow_wide"}},
		{"ipv4 everything, mapped", `{"value":"::ffff:0.0.0.0/96","reason":"oops"}`, 400, []string{"0.0.0.0/0", "/8", "allow_wide"}},
		{"ipv4 /7", `{"value":"198.0.0.0/7","reason":"oops"}`, 400, []string{"/8", "allow_wide"}},
		{"ipv6 /31", `{"value":"2001:db8::/31","reason":"oops"}`, 400, []string{"/32", "allow_wide"}},
		{"explicitly false", `{"value":"0.0.0.0/0","reason":"oops","allow_wide":false}`, 400, []string{"/8", "allow_wide"}},
		{"ipv4 at the limit", `{"value":"198.0.0.0/8","reason":"lab"}`, 201, nil},
		{"ipv6 at the limit", `{"value":"2001:db8::/32","reason":"lab"}`, 201, nil},
		{"ipv4 everything, overridden", `{"value":"0.0.0.0/0","reason":"maintenance","allow_wide":true}`, 201, nil},
		{"ipv6 everything, overridden", `{"value":"::/0","reason":"maintenance","allow_wide":true}`, 201, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			ban := f.add(t, "198.18.7.7", time.Hour, "x")
			resp, err := http.Post(f.admin.URL+"/v1/admin/allowlist", "application/json", strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("%s: %d %s, want %d", c.body, resp.StatusCode, body, c.want)
			}
			_, held := f.enf.held[ban.ID]
			if c.want != 201 {
				var eb errorBody
				if err := json.Unmarshal(body, &eb); err != nil {
					t.Fatal(err)
				}
				for _, m := range c.msg {
					if !strings.Contains(eb.Message, m) {
						t.Errorf("message %q does not say %q", eb.Message, m)
					}
				}
				if !held || len(f.svc.ListAllow()) != 1 {
					t.Errorf("a refused entry changed something: ban held %v, allowlist %v", held, f.svc.ListAllow())
				}
				return
			}
			var ar AllowResponse
			if err := json.Unmarshal(body, &ar); err != nil {
				t.Fatal(err)
			}
			covers := ar.Entry.Value.Contains(ban.Value.Addr())
			if covers == held || covers != (len(ar.Lifted) == 1) {
				t.Errorf("entry %s: ban held %v, lifted %v", ar.Entry.Value, held, ar.Lifted)
			}
		})
	}
}
