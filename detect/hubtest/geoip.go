package hubtest

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moatsec/moat/detect/geoip"
	"github.com/moatsec/moat/detect/parse"
)

// Mirror serves the GeoIP databases a hub parser names by source URL from
// a local directory holding files named as the URLs' last elements (the
// hub's tests point their own copy of geoip-enrich at test databases, so
// one database for all would fail either them or the others). It opens
// each pair once; Close releases them.
type Mirror struct {
	dir string

	mu     sync.Mutex
	opened map[string]*geoip.DB
	err    error
}

// NewMirror serves the databases in dir.
func NewMirror(dir string) *Mirror { return &Mirror{dir: dir, opened: map[string]*geoip.DB{}} }

// For is a parse.Options.GeoIPFor: nil when dir holds none of the files.
func (m *Mirror) For(urls []string) parse.GeoIP {
	var city, asn string
	for _, u := range urls {
		name := path.Base(u)
		p := filepath.Join(m.dir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		switch {
		case strings.Contains(name, "City"):
			city = p
		case strings.Contains(name, "ASN"):
			asn = p
		}
	}
	if city == "" && asn == "" {
		return nil
	}
	key := city + "\x00" + asn
	m.mu.Lock()
	defer m.mu.Unlock()
	if db, ok := m.opened[key]; ok {
		return db
	}
	db, err := geoip.Open(city, asn)
	if err != nil {
		m.err = errors.Join(m.err, err)
		return nil
	}
	m.opened[key] = db
	return db
}

// Err reports the databases that could not be opened.
func (m *Mirror) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Close releases every opened database.
func (m *Mirror) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, db := range m.opened {
		errs = append(errs, db.Close())
	}
	m.opened = map[string]*geoip.DB{}
	return errors.Join(errs...)
}
