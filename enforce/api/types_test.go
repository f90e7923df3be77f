package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/moatsec/moat/enforce/store"
)

// A decision type is matched exactly, so one that differs from a known
// type only in case would be stored and served yet never enforced: it is
// refused, naming the field, and nothing is stored.
func TestAddDecisionTypeCase(t *testing.T) {
	f := newFixture(t)
	h := f.srv.AdminHandler()
	for _, tc := range []struct {
		typ  string
		code int
		want string // in the error message
	}{
		{"ban", http.StatusCreated, ""},
		{"captcha", http.StatusCreated, ""},
		{"", http.StatusCreated, ""}, // ban
		{"BAN", http.StatusBadRequest, `type "BAN": decision types are lowercase and matched exactly, so this one would never be enforced (did you mean "ban"?)`},
		{"Ban", http.StatusBadRequest, `did you mean "ban"?`},
		{"Captcha", http.StatusBadRequest, `type "Captcha"`},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			before, err := f.st.CountMatching(t.Context(), storeFilterAll)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := json.Marshal(AddDecisionsRequest{Decisions: []NewDecision{{Value: "198.18.7.7", Duration: "1h", Type: tc.typ}}})
			w := serve(h, http.MethodPost, "/v1/admin/decisions", "", body)
			if w.Code != tc.code {
				t.Fatalf("POST type %q: %d %s, want %d", tc.typ, w.Code, w.Body, tc.code)
			}
			after, err := f.st.CountMatching(t.Context(), storeFilterAll)
			if err != nil {
				t.Fatal(err)
			}
			if tc.code != http.StatusCreated {
				var eb errorBody
				if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || !strings.Contains(eb.Message, tc.want) {
					t.Errorf("error %s does not say %s", w.Body, tc.want)
				}
				if after != before {
					t.Errorf("a refused decision was stored (%d -> %d)", before, after)
				}
			} else if after != before+1 {
				t.Errorf("accepted, but %d -> %d decisions", before, after)
			}
		})
	}
}

// storeFilterAll selects every decision, history included.
var storeFilterAll = store.Filter{History: true}
