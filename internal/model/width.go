package model

import (
	"errors"
	"fmt"
	"net/netip"
)

// DefaultMinBits4 and DefaultMinBits6 are the widest ranges a ban may
// cover (/8, /32) unless the configuration's enforce.min_range_bits_v4/v6 say otherwise. They
// bound allowlist entries too: an entry as wide as 0.0.0.0/0 lifts every ban
// and disables banning, so a wider one needs an explicit override.
const (
	DefaultMinBits4 = 8
	DefaultMinBits6 = 32
)

// ErrTooWide is wrapped by every *WidthError.
var ErrTooWide = errors.New("range too wide")

// WidthError says a range is wider than a limit.
type WidthError struct {
	Prefix netip.Prefix
	// MinBits is the limit: the widest range accepted is /MinBits.
	MinBits int
}

func (e *WidthError) Error() string {
	fam := "IPv4"
	if e.Prefix.Addr().Is6() {
		fam = "IPv6"
	}
	return fmt.Sprintf("%s is wider than /%d, the limit for %s ranges", e.Prefix, e.MinBits, fam)
}

func (e *WidthError) Is(target error) bool { return target == ErrTooWide }

// CheckWidth returns a *WidthError when p is wider than /min4 (IPv4) or
// /min6 (IPv6).
func CheckWidth(p netip.Prefix, min4, min6 int) error {
	limit := min6
	if p.Addr().Is4() {
		limit = min4
	}
	if p.Bits() < limit {
		return &WidthError{Prefix: p.Masked(), MinBits: limit}
	}
	return nil
}

// CheckAllowWidth is the rule for allowlist entries, wherever they come
// from (configuration, CLI, API): no wider than the default ban limits.
func CheckAllowWidth(p netip.Prefix) error {
	return CheckWidth(p, DefaultMinBits4, DefaultMinBits6)
}
