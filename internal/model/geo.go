package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Scopes of decisions on every network a GeoIP database assigns to a
// country or an autonomous system, spelled as CrowdSec spells them.
const (
	ScopeCountry = "Country"
	ScopeAS      = "AS"
)

// Geo names a country or an autonomous system: the target of a Country or
// AS decision, or a country:/as: allowlist entry. The zero Geo names
// nothing.
type Geo struct {
	// Scope is ScopeCountry or ScopeAS.
	Scope string
	// Value is an ISO 3166-1 alpha-2 code in upper case ("CN"), or an AS
	// number in decimal ("4134").
	Value string
}

// IsZero reports whether g names nothing.
func (g Geo) IsZero() bool { return g.Scope == "" }

// String is g as an allowlist entry writes it: country:CN, as:4134.
func (g Geo) String() string {
	if g.IsZero() {
		return ""
	}
	return strings.ToLower(g.Scope) + ":" + g.Value
}

// ErrBadGeo is wrapped by the errors of ParseGeo and ParseGeoEntry.
var ErrBadGeo = errors.New("bad country or AS")

// ParseGeo reads a scope ("country" or "as", any case) and its value: a
// two-letter country code (any case), or an AS number, bare or written
// AS4134.
func ParseGeo(scope, value string) (Geo, error) {
	value = strings.TrimSpace(value)
	switch strings.ToLower(strings.TrimSpace(scope)) {
	case "country":
		if len(value) != 2 || !isLetter(value[0]) || !isLetter(value[1]) {
			return Geo{}, fmt.Errorf("%w: country %q: want a two-letter ISO 3166-1 code such as CN", ErrBadGeo, value)
		}
		return Geo{Scope: ScopeCountry, Value: strings.ToUpper(value)}, nil
	case "as", "asn":
		digits := value
		if len(digits) > 2 && strings.EqualFold(digits[:2], "as") {
			digits = digits[2:]
		}
		n, err := strconv.ParseUint(digits, 10, 32)
		if err != nil || n == 0 || digits[0] == '+' {
			return Geo{}, fmt.Errorf("%w: AS %q: want an AS number from 1 to 4294967295 such as 4134", ErrBadGeo, value)
		}
		return Geo{Scope: ScopeAS, Value: strconv.FormatUint(n, 10)}, nil
	}
	return Geo{}, fmt.Errorf("%w: scope %q: want country or as", ErrBadGeo, scope)
}

// ParseGeoEntry reads an allowlist entry of the form country:CN or
// as:4134. ok is false, with no error, when s is not of that form (an
// address, a range or a hostname); an error means it is, but wrong.
func ParseGeoEntry(s string) (g Geo, ok bool, err error) {
	scope, value, found := strings.Cut(strings.TrimSpace(s), ":")
	if !found {
		return Geo{}, false, nil
	}
	switch strings.ToLower(scope) {
	case "country", "as", "asn":
	default:
		return Geo{}, false, nil
	}
	g, err = ParseGeo(scope, value)
	return g, true, err
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// ScopeName is the decision's CrowdSec scope: Ip, Range, Country or AS.
func (d Decision) ScopeName() string {
	if !d.Geo.IsZero() {
		return d.Geo.Scope
	}
	return ScopeOf(d.Value)
}

// ValueString is the decision's value as written and stored: an address,
// a CIDR range, a country code or an AS number.
func (d Decision) ValueString() string {
	if !d.Geo.IsZero() {
		return d.Geo.Value
	}
	return ValueString(d.Value)
}

// ParseDecisionValue reads a decision's value as stored and served: an
// address or range (ParseValue), else a Country decision's two-letter
// code or an AS decision's number, whose forms no address takes.
func ParseDecisionValue(s string) (netip.Prefix, Geo, error) {
	p, err := ParseValue(s)
	if err == nil {
		return p, Geo{}, nil
	}
	if len(s) == 2 && isLetter(s[0]) && isLetter(s[1]) {
		g, gerr := ParseGeo("country", s)
		return netip.Prefix{}, g, gerr
	}
	if s != "" && strings.Trim(s, "0123456789") == "" {
		if g, gerr := ParseGeo("as", s); gerr == nil {
			return netip.Prefix{}, g, nil
		}
	}
	return netip.Prefix{}, Geo{}, err
}
