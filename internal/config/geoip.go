package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/yamlerr"
)

// GeoIP names MaxMind-format databases on disk (GeoLite2 or GeoIP2 City
// and ASN, or a file with the same fields): the hub's GeoIP enrichers,
// Country and AS decisions and allowlist entries, and the status page's
// country and AS panels read them. moat never downloads them. Both empty,
// the default, is GeoIP off.
type GeoIP struct {
	City string `yaml:"city"`
	ASN  string `yaml:"asn"`
}

// Enabled reports whether a database is configured.
func (g GeoIP) Enabled() bool { return g.City != "" || g.ASN != "" }

// geoipFiles are the configured databases with their keys.
func (g GeoIP) files() []struct{ key, path string } {
	var out []struct{ key, path string }
	for _, f := range []struct{ key, path string }{{"city", g.City}, {"asn", g.ASN}} {
		if f.path != "" {
			out = append(out, f)
		}
	}
	return out
}

// validateGeoIP checks the geoip section's paths, and that the allowlist's
// country: and as: entries have the database they need.
func (c *Config) validateGeoIP(bad func(msg string, keys ...any) error) error {
	for _, f := range c.GeoIP.files() {
		if !filepath.IsAbs(f.path) {
			return bad(fmt.Sprintf("geoip.%s %s: want an absolute path", f.key, yamlerr.Excerpt(f.path)), "geoip", f.key)
		}
	}
	for i, s := range c.Allowlist {
		g, ok, err := model.ParseGeoEntry(s)
		if !ok || err != nil {
			continue
		}
		if err := c.GeoIP.Need(g); err != nil {
			return bad(fmt.Sprintf("allowlist entry %s: %v", yamlerr.Excerpt(s), err), "allowlist", i)
		}
	}
	return nil
}

// ErrNoGeoIP is wrapped by Need's errors.
var ErrNoGeoIP = errors.New("no GeoIP database configured")

// Need returns an error naming the setting to add when the database g
// needs (City for a country, ASN for an AS) is not configured.
func (g GeoIP) Need(geo model.Geo) error {
	switch {
	case geo.Scope == model.ScopeCountry && g.City == "":
		return fmt.Errorf("%w: country entries and decisions need a City database; set geoip.city in moat.yaml", ErrNoGeoIP)
	case geo.Scope == model.ScopeAS && g.ASN == "":
		return fmt.Errorf("%w: AS entries and decisions need an ASN database; set geoip.asn in moat.yaml", ErrNoGeoIP)
	}
	return nil
}

// checkGeoIP checks that the configured databases are readable files;
// whether they are databases is for the code opening them (GeoIPError).
func (c *Config) checkGeoIP() error {
	for _, f := range c.GeoIP.files() {
		st, err := os.Stat(f.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return c.errAt(fmt.Sprintf("geoip.%s %s: no such file (moat never downloads GeoIP databases: install them, with geoipupdate for instance)", f.key, quotePath(f.path)), "geoip", f.key)
		case err != nil:
			return c.errAt(fmt.Sprintf("geoip.%s: %v", f.key, err), "geoip", f.key)
		case !st.Mode().IsRegular():
			return c.errAt(fmt.Sprintf("geoip.%s %s: not a regular file", f.key, quotePath(f.path)), "geoip", f.key)
		}
		r, err := os.Open(f.path)
		if err != nil {
			return c.errAt(fmt.Sprintf("geoip.%s: %v", f.key, err), "geoip", f.key)
		}
		r.Close()
	}
	return nil
}

// GeoIPError is err, met opening the database of geoip.key ("city" or
// "asn"), as a configuration error at that key's line.
func (c *Config) GeoIPError(key string, err error) error {
	path := c.GeoIP.City
	if key == "asn" {
		path = c.GeoIP.ASN
	}
	e := c.errAt(fmt.Sprintf("geoip.%s %s: %v", key, quotePath(path), err), "geoip", key).(*Error)
	e.Err = err
	return e
}

// quotePath quotes a path whole up to PATH_MAX; a longer one cannot exist.
func quotePath(p string) string {
	if len(p) > 4096 {
		return yamlerr.Excerpt(p)
	}
	return strconv.Quote(p)
}
