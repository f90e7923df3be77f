package parse

import (
	"net/netip"
	"path"
	"strconv"

	"github.com/moatsec/moat/detect/exprenv"
	"github.com/moatsec/moat/detect/geoip"
)

// GeoIP answers the GeoIpCity, GeoIpASN and IpToRange enrichers;
// *geoip.DB is one.
type GeoIP interface {
	City(netip.Addr) (geoip.City, error)
	ASN(netip.Addr) (geoip.ASN, error)
	Range(netip.Addr) (netip.Prefix, bool, error)
}

// geoFor is the GeoIP a node's enrichers use: the one its own data
// entries name when Options.GeoIPFor knows them, else Options.GeoIP.
func (p *Pipeline) geoFor(data []string) GeoIP {
	if p.opts.GeoIPFor != nil && len(data) > 0 {
		if g := p.opts.GeoIPFor(data); g != nil {
			return g
		}
	}
	return p.opts.GeoIP
}

// geoDataURLs are the source URLs of a node's untyped data entries, the
// databases its GeoIP enrichers were written against.
func geoDataURLs(ds []exprenv.DataSpec) []string {
	var out []string
	for _, d := range ds {
		if d.Type == "" && path.Ext(d.SourceURL) == ".mmdb" {
			out = append(out, d.SourceURL)
		}
	}
	return out
}

// geoEnricher is the enricher for a GeoIP method, nil when name is none.
// The fields written and their formats are CrowdSec's, which hub parsers
// and scenarios read (IsInEU "true", Latitude "%f", ASNNumber "0" for an
// address in no announced network).
func geoEnricher(name string, g GeoIP) enricher {
	if g == nil {
		return nil
	}
	switch name {
	case "GeoIpCity":
		return func(r *run, value string) {
			ip, ok := parseIP(value)
			if !ok {
				return
			}
			c, err := g.City(ip)
			if err != nil {
				r.p.unavailable.Add(1)
				return
			}
			en := r.evt.Enriched
			en["IsoCode"] = c.IsoCode
			en["IsInEU"] = strconv.FormatBool(c.InEU)
			en["Latitude"] = strconv.FormatFloat(c.Latitude, 'f', 6, 64)
			en["Longitude"] = strconv.FormatFloat(c.Longitude, 'f', 6, 64)
		}
	case "GeoIpASN":
		return func(r *run, value string) {
			ip, ok := parseIP(value)
			if !ok {
				return
			}
			a, err := g.ASN(ip)
			if err != nil {
				r.p.unavailable.Add(1)
				return
			}
			n := strconv.FormatUint(uint64(a.Number), 10)
			en := r.evt.Enriched
			en["ASNNumber"] = n
			en["ASNumber"] = n
			en["ASNOrg"] = a.Org
		}
	case "IpToRange":
		return func(r *run, value string) {
			ip, ok := parseIP(value)
			if !ok {
				return
			}
			p, found, err := g.Range(ip)
			if err != nil {
				r.p.unavailable.Add(1)
				return
			}
			if found {
				r.evt.Enriched["SourceRange"] = p.String()
			}
		}
	}
	return nil
}

func parseIP(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.WithZone(""), true
}
