package model

import (
	"net/netip"
	"time"
)

// Origin says where a decision came from.
type Origin string

const (
	OriginLocal     Origin = "local"     // a local scenario overflowed
	OriginCLI       Origin = "cli"       // an admin ran moat decisions add
	OriginAPI       Origin = "api"       // a client of the local API
	OriginCommunity Origin = "community" // the opt-in community blocklist
	OriginList      Origin = "list"      // an imported list
	// OriginMachine is a scenario that overflowed on a CrowdSec agent
	// (a machine) pushing its alerts to this fleet server; a machine's
	// cscli decisions keep OriginCLI.
	OriginMachine Origin = "machine"
	// OriginFleet is a decision a fleet agent received from its fleet
	// server's decision stream; it is never pushed back to the server.
	OriginFleet Origin = "fleet"
)

// Scope of an alert source or decision, spelled as CrowdSec spells it.
const (
	ScopeIP    = "Ip"
	ScopeRange = "Range"
)

// Alert is what a scenario overflow produces: who did what, when.
type Alert struct {
	Scenario        string
	ScenarioVersion string
	ScenarioHash    string
	Message         string
	// Scope is ScopeIP or ScopeRange (or a custom scope, which enforce ignores).
	Scope string
	// Value is the source as a string (an address, a CIDR, or a custom value).
	Value string
	// Source is Value parsed; a single address is a full-length prefix.
	// It is invalid when the scope is not an address or range.
	Source      netip.Prefix
	Start, Stop time.Time
	EventsCount int
	// Meta is the merged meta of the events that filled the bucket.
	Meta map[string]string
	// Events holds the meta of each event, oldest first.
	Events []map[string]string
	// Context is the alert context: per key of the hub's context files,
	// the distinct values their expressions gave over the overflow's
	// events, in the order first seen, bounded in number and length
	// (detect/alertctx). It is what an admin reads to see why the alert
	// fired without the logs (the URIs asked, the users tried).
	Context     map[string][]string `json:",omitempty"`
	Labels      map[string]string
	Remediation bool
	Simulated   bool
	// Duration, when set, is the ban duration the scenario's override
	// chose; it replaces the profiles' duration.
	Duration time.Duration `json:",omitempty"`
	// ReadAt is when the line that made the bucket overflow was read, on the
	// local clock; it anchors the detection-to-kernel latency.
	ReadAt time.Time
}

// Decision is a ban on an address or range until an expiry, or on every
// network a GeoIP database assigns to a country or an autonomous system.
type Decision struct {
	ID    int64
	Value netip.Prefix
	// Geo, when set, makes this a Country or AS decision: Value is then
	// invalid, and enforce bans the networks the configured database
	// assigns to Geo.
	Geo Geo
	// Type is "ban"; other remediation types are stored and served to
	// bouncers but never enforced in the kernel.
	Type      string
	Origin    Origin
	Scenario  string
	Reason    string
	Until     time.Time // zero means never expires
	Simulated bool
	// Ports, when set, scope the ban to these destination ports (sorted,
	// no duplicates) of Protocol ("tcp", "udp", or "" for both): the
	// source still reaches every other port.
	Ports    []uint16
	Protocol string
	// ReadAt is carried from the alert for latency accounting; zero for
	// decisions that did not come from a log line.
	ReadAt time.Time
}

// Expired reports whether the decision has run out at now.
func (d Decision) Expired(now time.Time) bool {
	return !d.Until.IsZero() && !now.Before(d.Until)
}

// SingleAddr reports whether the decision covers exactly one address.
func (d Decision) SingleAddr() bool {
	return d.Value.Bits() == d.Value.Addr().BitLen()
}
