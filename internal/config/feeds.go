package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"
)

// Feed is a list feed: a file or an http(s) URL holding one address or
// CIDR range a line, pulled every interval into ban decisions of origin
// list named after the feed. Off unless listed under feeds:.
type Feed struct {
	// Name is the scenario of the feed's decisions.
	Name string `yaml:"name"`
	// URL or File: exactly one.
	URL  string `yaml:"url"`
	File string `yaml:"file"`
	// Interval is the time between pulls. Duration is how long a listed
	// entry stays banned without a pull renewing it: it outlives pulls
	// that fail (fail static), so it must be longer than the interval.
	Interval time.Duration `yaml:"interval"`
	Duration time.Duration `yaml:"duration"`
	// MaxEntries caps the decisions the feed holds (the list's first
	// entries win); a list larger than MaxBytes fails its pull.
	MaxEntries int   `yaml:"max_entries"`
	MaxBytes   int64 `yaml:"max_bytes"`
}

// MarshalYAML shows the URL without its password, as StoreConf does the
// DSN: moat config check prints the effective configuration.
func (f Feed) MarshalYAML() (any, error) {
	type plain Feed
	if u, err := url.Parse(f.URL); err == nil && u.User != nil {
		f.URL = u.Redacted()
	}
	return plain(f), nil
}

// Feed defaults, for the keys an entry leaves out.
const (
	DefaultFeedInterval   = time.Hour
	DefaultFeedDuration   = 24 * time.Hour
	DefaultFeedMaxEntries = 100_000
	DefaultFeedMaxBytes   = 16 << 20
)

// validateFeeds fills each feed's defaults (a list's entries cannot be
// filled before decoding) and checks it.
func (c *Config) validateFeeds(bad func(msg string, keys ...any) error) error {
	names := map[string]bool{}
	for i := range c.Feeds {
		f := &c.Feeds[i]
		if f.Interval == 0 {
			f.Interval = DefaultFeedInterval
		}
		if f.Duration == 0 {
			f.Duration = max(DefaultFeedDuration, 2*f.Interval)
		}
		if f.MaxEntries == 0 {
			f.MaxEntries = DefaultFeedMaxEntries
		}
		if f.MaxBytes == 0 {
			f.MaxBytes = DefaultFeedMaxBytes
		}
		if !feedName(f.Name) {
			return bad(fmt.Sprintf("feed name %q: want 1 to 64 letters, digits, '-', '_', '.' or '/'", short(f.Name)), "feeds", i, "name")
		}
		if names[f.Name] {
			return bad(fmt.Sprintf("feed name %s: used by another feed", f.Name), "feeds", i, "name")
		}
		names[f.Name] = true
		switch {
		case (f.URL == "") == (f.File == ""):
			return bad(fmt.Sprintf("feed %s: give exactly one of url and file", f.Name), "feeds", i)
		case f.URL != "":
			u, err := url.Parse(f.URL)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return bad(fmt.Sprintf("feed %s: url %s: want http:// or https://host/...", f.Name, short(f.URL)), "feeds", i, "url")
			}
		case !filepath.IsAbs(f.File):
			return bad(fmt.Sprintf("feed %s: file %s: want an absolute path", f.Name, short(f.File)), "feeds", i, "file")
		}
		if f.Interval < 10*time.Second {
			return bad(fmt.Sprintf("feed %s: interval %s: want at least 10s", f.Name, f.Interval), "feeds", i, "interval")
		}
		if f.Duration <= f.Interval {
			return bad(fmt.Sprintf("feed %s: duration %s: want longer than the interval (%s), or listed entries lapse between pulls", f.Name, f.Duration, f.Interval), "feeds", i, "duration")
		}
		if f.MaxEntries < 0 || f.MaxEntries > 10_000_000 {
			return bad(fmt.Sprintf("feed %s: max_entries %d: want 1 to 10000000", f.Name, f.MaxEntries), "feeds", i, "max_entries")
		}
		if f.MaxBytes < 0 || f.MaxBytes > 1<<30 {
			return bad(fmt.Sprintf("feed %s: max_bytes %d: want 1 to 1073741824", f.Name, f.MaxBytes), "feeds", i, "max_bytes")
		}
	}
	return nil
}

func feedName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/') {
			return false
		}
	}
	return true
}
