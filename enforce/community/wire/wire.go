// Package wire holds what the community client and server share: the
// CrowdSec CAPI shapes both speak (register, login, signals, decision
// stream) and the rule for which addresses may be exchanged at all.
package wire

import (
	"net/netip"
	"time"
)

// Credentials register a machine (POST /v3/watchers) and log it in
// (POST /v3/watchers/login, with the scenarios it runs).
type Credentials struct {
	MachineID string   `json:"machine_id"`
	Password  string   `json:"password"`
	Scenarios []string `json:"scenarios,omitempty"`
}

// LoginResponse answers a login, as CrowdSec's CAPI does.
type LoginResponse struct {
	Code   int    `json:"code"`
	Expire string `json:"expire"`
	Token  string `json:"token"`
}

// Enroll is CrowdSec's console enrolment request: the attachment key is
// the community server's enrolment token.
type Enroll struct {
	AttachmentKey string   `json:"attachment_key"`
	Name          string   `json:"name,omitempty"`
	Tags          []string `json:"tags,omitempty"`
	Overwrite     bool     `json:"overwrite,omitempty"`
}

// Source is a signal's source. moat sends only these three fields;
// CrowdSec agents send more (AS, country, range), which the server ignores.
type Source struct {
	Scope string `json:"scope"`
	Value string `json:"value"`
	IP    string `json:"ip"`
}

// Signal is one item of POST /v3/signals as moat sends it: no message, no
// log lines, no context, no machine identity beyond the login's pseudonym.
type Signal struct {
	Scenario        string    `json:"scenario"`
	ScenarioHash    string    `json:"scenario_hash"`
	ScenarioVersion string    `json:"scenario_version"`
	Source          Source    `json:"source"`
	StartAt         time.Time `json:"start_at"`
	StopAt          time.Time `json:"stop_at"`
	CreatedAt       time.Time `json:"created_at"`
}

// StreamV3 is the CAPI v3 decision stream: new decisions grouped by
// scenario and scope, deleted values grouped by scope.
type StreamV3 struct {
	New     []NewGroup     `json:"new"`
	Deleted []DeletedGroup `json:"deleted"`
	Links   Links          `json:"links"`
}

// NewGroup is the listed addresses of one scenario.
type NewGroup struct {
	Scenario  string        `json:"scenario"`
	Scope     string        `json:"scope"`
	Decisions []NewDecision `json:"decisions"`
}

// NewDecision is one listed address and how long it stays listed.
type NewDecision struct {
	Value    string `json:"value"`
	Duration string `json:"duration"`
}

// DeletedGroup is the addresses that left the list, by scope.
type DeletedGroup struct {
	Scope     string   `json:"scope"`
	Decisions []string `json:"decisions"`
}

// Links point to further blocklists; this server publishes none.
type Links struct {
	Blocklists []any `json:"blocklists"`
}

// DecisionV2 is a decision of the CAPI v2 stream (CrowdSec 1.4's
// models.Decision), which lists new and deleted decisions flat.
type DecisionV2 struct {
	ID        int64  `json:"id,omitempty"`
	Duration  string `json:"duration"`
	Origin    string `json:"origin"`
	Scenario  string `json:"scenario"`
	Scope     string `json:"scope"`
	Type      string `json:"type"`
	Value     string `json:"value"`
	Simulated bool   `json:"simulated"`
}

// StreamV2 is the CAPI v2 decision stream.
type StreamV2 struct {
	New     []DecisionV2 `json:"new"`
	Deleted []DecisionV2 `json:"deleted"`
}

// bogons are ranges no attacker on the internet can come from: special
// purpose, documentation, shared and multicast space (IANA's special
// registries). A report of one is either a test or a lie.
var bogons = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/8", "64:ff9b::/96", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16",
		"3fff::/20", "fc00::/7", "fe80::/10", "ff00::/8",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Public reports whether a is a public unicast address: the only kind a
// client shares and a server lists.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || !a.IsGlobalUnicast() || a.IsPrivate() || a.Zone() != "" {
		return false
	}
	for _, p := range bogons {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
