package model

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Forever is the duration word of a decision that never expires: its Until
// is zero, the kernel holds it without a timeout and no expiry pass ends it.
const Forever = "forever"

// ErrDuration is wrapped by ParseDuration's errors.
var ErrDuration = errors.New("want a positive duration such as 4h, 7d or forever")

// ParseDuration reads a decision duration as configuration and the CLI
// write it: a Go duration ("90m", "4h"), whole days first when there are any
// ("7d", "1d12h"), since a ban of a week written in hours is error-prone,
// or Forever, which returns forever and no duration.
func ParseDuration(s string) (d time.Duration, forever bool, err error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, Forever) {
		return 0, true, nil
	}
	rest := s
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, perr := strconv.ParseUint(s[:i], 10, 16)
		if perr != nil {
			return 0, false, fmt.Errorf("duration %q: %w", s, ErrDuration)
		}
		days, rest = time.Duration(n)*24*time.Hour, s[i+1:]
	}
	if rest != "" {
		d, err = time.ParseDuration(rest)
		if err != nil {
			return 0, false, fmt.Errorf("duration %q: %w", s, ErrDuration)
		}
	}
	d += days
	if d <= 0 {
		return 0, false, fmt.Errorf("duration %q: %w", s, ErrDuration)
	}
	return d, false, nil
}

// FormatDuration writes d as ParseDuration reads it, with whole days as
// days; zero is Forever.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return Forever
	}
	days := d / (24 * time.Hour)
	rest := d - days*24*time.Hour
	switch {
	case days == 0:
		return d.String()
	case rest == 0:
		return strconv.FormatInt(int64(days), 10) + "d"
	default:
		return strconv.FormatInt(int64(days), 10) + "d" + rest.String()
	}
}
