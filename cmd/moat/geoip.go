package main

import (
	"context"
	"errors"
	"net/netip"

	"github.com/moatsec/moat/detect/geoip"
	"github.com/moatsec/moat/detect/parse"
	"github.com/moatsec/moat/enforce"
	dynallow "github.com/moatsec/moat/enforce/allowlist"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/decision"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/metrics"
)

// openGeoIP opens the databases of the geoip: section, nil when it names
// none. One that cannot be opened (not a MaxMind DB, or a City path
// holding an ASN database) is a configuration error at its key; a missing
// or unreadable file was refused before, by config.CheckPaths.
func openGeoIP(cfg config.Config) (*geoip.DB, error) {
	g := cfg.GeoIP
	if !g.Enabled() {
		return nil, nil
	}
	db, err := geoip.Open(g.City, g.ASN)
	var oe *geoip.OpenError
	if errors.As(err, &oe) {
		key := "city"
		if oe.Kind == "ASN" {
			key = "asn"
		}
		return nil, cfg.GeoIPError(key, oe.Err)
	}
	return db, err
}

// openContent is resolveContent with the GeoIP databases opened for the
// engine's enrichers, closed by cleanup: what a command building an engine
// of its own (replay, explain, config check) needs. The daemon opens them
// once for its lifetime instead (daemon.openGeo), as the kernel's Country
// and AS bans read them too.
func openContent(cfg config.Config) (content, error) {
	c, err := resolveContent(cfg)
	if err != nil {
		return c, err
	}
	if c.geo, err = openGeoIP(cfg); err != nil {
		c.cleanup()
		return content{}, err
	}
	if db := c.geo; db != nil {
		clean := c.cleanup
		c.cleanup = func() { db.Close(); clean() }
	}
	return c, nil
}

// geoIP is the content's database for the engine's enrichers, nil
// without one.
func (c content) geoIP() parse.GeoIP {
	if c.geo == nil {
		return nil
	}
	return c.geo
}

// openGeo opens the daemon's GeoIP databases, kept until it stops: the
// engine, the reconciler (Country and AS decisions), the allowlist
// (country: and as: entries) and the status page share them. geoip: is
// read at start only; a reload keeps them.
func (d *daemon) openGeo() error {
	db, err := openGeoIP(d.cfg)
	if err != nil || db == nil {
		return err
	}
	d.geo, d.content.geo = db, db
	d.closers = append(d.closers, func() { db.Close() })
	d.log.Info("GeoIP databases loaded", "city", d.cfg.GeoIP.City, "asn", d.cfg.GeoIP.ASN)
	return nil
}

// geoNetworks is the daemon's database for the reconciler, nil without
// one (an interface holding a nil *geoip.DB is not nil).
func (d *daemon) geoNetworks() enforce.GeoNetworks {
	if d.geo == nil {
		return nil
	}
	return d.geo
}

// allowGeo is the daemon's database for the allowlist's geo entries.
func (d *daemon) allowGeo() dynallow.Geo {
	if d.geo == nil {
		return nil
	}
	return d.geo
}

// geoResolver is the daemon's database for the status page's country and
// AS panels, nil without one.
func (d *daemon) geoResolver() metrics.GeoResolver {
	if d.geo == nil {
		return nil
	}
	return geoLookup{d.geo}
}

// geoLookup answers the status page from the memory-mapped databases.
type geoLookup struct{ db *geoip.DB }

func (g geoLookup) Lookup(a netip.Addr) (metrics.GeoInfo, bool) {
	var info metrics.GeoInfo
	info.Country = g.db.Country(a)
	if as, err := g.db.ASN(a); err == nil {
		info.ASN, info.ASOrg = uint32(as.Number), as.Org
	}
	return info, info.Country != "" || info.ASN != 0
}

// geoStatus is what moat status says of GeoIP: nil when it is off.
func (d *daemon) geoStatus() *api.GeoIPStatus {
	if d.geo == nil {
		return nil
	}
	city, asn := d.geo.Paths()
	st := &api.GeoIPStatus{City: city, ASN: asn}
	st.CountryNetworks, st.ASNetworks = d.geo.IndexedNetworks()
	st.Decisions, st.Ranges = d.recon.GeoDecisions()
	return st
}

// allowGeoChanged is the allowlist's GeoChanged: its country: and as:
// entries now protect other networks, so the address and range bans
// inside them are lifted, and the Country and AS bans carved again around
// them (the guard reads them through Manager.GeoOverlaps).
func (d *decisions) allowGeoChanged(ctx context.Context, m *daemon, svc *decision.Service, mgr *dynallow.Manager) {
	log := d.log.With("component", "allowlist")
	lifted, err := dynallow.LiftProtected(ctx, svc, mgr.GeoProtected)
	for _, x := range lifted {
		log.Info("ban lifted: the address is allowlisted", "value", x.ValueString(), "scenario", x.Scenario)
	}
	if err = errors.Join(err, m.recon.Recarve(ctx)); err != nil && ctx.Err() == nil {
		log.Warn("applying the allowlist's country and AS entries to the bans", "err", err)
	}
}
