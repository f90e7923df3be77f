package geoip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// ErrNoDatabase is returned when a question needs a database that was not
// configured.
var ErrNoDatabase = errors.New("geoip: no database configured")

// City is what the City database knows of an address. The zero value is
// what an address missing from the database gets, as CrowdSec's enrichers
// report it.
type City struct {
	IsoCode   string
	InEU      bool
	Latitude  float64
	Longitude float64
}

// ASN is what the ASN database knows of an address; Number is 0 when the
// address is in no announced network.
type ASN struct {
	Number uint
	Org    string
}

// DB holds the opened databases. Its lookups read the memory-mapped files
// and are safe for concurrent use.
type DB struct {
	city, asn *maxminddb.Reader
	// cityPath and asnPath are the files opened, for status reports.
	cityPath, asnPath string
	// countries and systems are the networks of each country and AS,
	// walked from the database on first use (networks.go).
	countries, systems netIndex
}

// Open opens the City and ASN databases; either path may be empty, and the
// questions that need it then answer ErrNoDatabase.
func Open(cityPath, asnPath string) (*DB, error) {
	d := &DB{cityPath: cityPath, asnPath: asnPath}
	var err error
	if cityPath != "" {
		if d.city, err = openKind(cityPath, "City"); err != nil {
			return nil, err
		}
	}
	if asnPath != "" {
		if d.asn, err = openKind(asnPath, "ASN"); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// OpenError is a database Open could not open: missing, unreadable, not
// a MaxMind DB, or of the wrong kind.
type OpenError struct {
	// Kind is "City" or "ASN", the database the path was given for.
	Kind, Path string
	Err        error
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("geoip: %s database %s: %v", e.Kind, e.Path, e.Err)
}

func (e *OpenError) Unwrap() error { return e.Err }

// openKind refuses a database whose type does not name kind, so a City
// path pointing at an ASN file fails at start rather than answering "" for
// every address.
func openKind(path, kind string) (*maxminddb.Reader, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, &OpenError{Kind: kind, Path: path, Err: err}
	}
	if t := r.Metadata.DatabaseType; !strings.Contains(strings.ToLower(t), strings.ToLower(kind)) {
		r.Close()
		return nil, &OpenError{Kind: kind, Path: path, Err: fmt.Errorf("database type %q is not a %s database", t, kind)}
	}
	return r, nil
}

// Close releases the databases.
func (d *DB) Close() error {
	var errs []error
	for _, r := range []*maxminddb.Reader{d.city, d.asn} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// HasCity and HasASN say which databases are configured.
func (d *DB) HasCity() bool { return d != nil && d.city != nil }

// HasASN reports whether an ASN database is configured.
func (d *DB) HasASN() bool { return d != nil && d.asn != nil }

type cityRecord struct {
	Country struct {
		IsoCode string `maxminddb:"iso_code"`
		InEU    bool   `maxminddb:"is_in_european_union"`
	} `maxminddb:"country"`
	Location struct {
		Latitude  float64 `maxminddb:"latitude"`
		Longitude float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

type asnRecord struct {
	Number uint   `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

// City looks ip up in the City database. An address the database does not
// hold is the zero City and no error.
func (d *DB) City(ip netip.Addr) (City, error) {
	if !d.HasCity() {
		return City{}, ErrNoDatabase
	}
	var rec cityRecord
	if err := d.city.Lookup(ip.Unmap()).Decode(&rec); err != nil {
		return City{}, fmt.Errorf("geoip: city %s: %w", ip, err)
	}
	return City{IsoCode: rec.Country.IsoCode, InEU: rec.Country.InEU, Latitude: rec.Location.Latitude, Longitude: rec.Location.Longitude}, nil
}

// ASN looks ip up in the ASN database. An address the database does not
// hold is the zero ASN and no error.
func (d *DB) ASN(ip netip.Addr) (ASN, error) {
	if !d.HasASN() {
		return ASN{}, ErrNoDatabase
	}
	var rec asnRecord
	if err := d.asn.Lookup(ip.Unmap()).Decode(&rec); err != nil {
		return ASN{}, fmt.Errorf("geoip: asn %s: %w", ip, err)
	}
	return ASN(rec), nil
}

// Range is the announced network of the ASN database holding ip; false
// when the database holds no network for it.
func (d *DB) Range(ip netip.Addr) (netip.Prefix, bool, error) {
	if !d.HasASN() {
		return netip.Prefix{}, false, ErrNoDatabase
	}
	res := d.asn.Lookup(ip.Unmap())
	if err := res.Err(); err != nil {
		return netip.Prefix{}, false, fmt.Errorf("geoip: range %s: %w", ip, err)
	}
	if !res.Found() {
		return netip.Prefix{}, false, nil
	}
	return res.Prefix(), true, nil
}

// Country is ip's ISO 3166-1 alpha-2 country code, "" when unknown or
// without a City database.
func (d *DB) Country(ip netip.Addr) string {
	c, err := d.City(ip)
	if err != nil {
		return ""
	}
	return c.IsoCode
}

// ASNumber is ip's autonomous system number, 0 when unknown or without an
// ASN database.
func (d *DB) ASNumber(ip netip.Addr) uint {
	a, err := d.ASN(ip)
	if err != nil {
		return 0
	}
	return a.Number
}

// Paths are the files the City and ASN databases were opened from, "" for
// one not configured.
func (d *DB) Paths() (city, asn string) {
	if d == nil {
		return "", ""
	}
	return d.cityPath, d.asnPath
}
