package parse

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/model"
)

// TrustedProxies lets an HTTP access log behind a reverse proxy or load
// balancer name its real client: when the address a line logs as its peer
// (meta source_ip, as the parser set it) is one of Proxies, the client is
// read from the forwarded-client header the parser captured. Anyone else
// can send that header with any text in it, so from any other peer it is
// ignored: believing it would let an attacker choose whom moat bans.
type TrustedProxies struct {
	// Proxies are the proxies' addresses and ranges; none turns the
	// rewrite off.
	Proxies []netip.Prefix
	// Header is the header's name: X-Forwarded-For (a list, the nearest
	// hop last), X-Real-IP (one address) or Forwarded (RFC 7239, its
	// for= parameters).
	Header string
}

// HeaderFields are the parsed fields a forwarded-client header is looked
// up in: nginx's variable name ($http_x_forwarded_for, which moat's
// nginx parser captures), then the bare name some hub parsers use
// (x_forwarded_for).
func (t TrustedProxies) HeaderFields() []string {
	name := strings.ToLower(strings.ReplaceAll(t.Header, "-", "_"))
	return []string{"http_" + name, name}
}

// Bounds on the header read: proxies append one hop each, and a header
// past these is either a misconfiguration or an attack on the reader.
const (
	// maxForwardedBytes is how much of the header's end is read.
	maxForwardedBytes = 4096
	// maxForwardedHops is how many hops are walked from the right.
	maxForwardedHops = 32
)

// proxyRule is a compiled TrustedProxies.
type proxyRule struct {
	proxies []netip.Prefix
	fields  []string
	rfc7239 bool
	// rewritten counts events whose source the header set; refused
	// those whose header, from a trusted proxy, could not be read.
	rewritten, refused *atomic.Uint64
}

func newProxyRule(t TrustedProxies) (*proxyRule, error) {
	if len(t.Proxies) == 0 {
		return nil, nil
	}
	if t.Header == "" {
		return nil, fmt.Errorf("trusted proxies without a header name")
	}
	r := &proxyRule{fields: t.HeaderFields(), rfc7239: strings.EqualFold(t.Header, "Forwarded"),
		rewritten: new(atomic.Uint64), refused: new(atomic.Uint64)}
	for _, p := range t.Proxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("trusted proxy %v: not an address or range", p)
		}
		// Hops are unmapped before the lookup: ::ffff:10.0.0.0/104 is
		// 10.0.0.0/8.
		r.proxies = append(r.proxies, model.Canonical(p))
	}
	return r, nil
}

func (r *proxyRule) trusted(a netip.Addr) bool {
	for _, p := range r.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// apply sets the event's source to the client its trusted proxy names.
// It reports whether it decided (the event had a source and the header
// field, whatever the outcome), so the pipeline stops asking.
func (r *proxyRule) apply(evt *detect.Event) bool {
	src, ok := evt.Meta["source_ip"]
	if !ok || src == "" {
		return false
	}
	var hdr string
	found := false
	for _, f := range r.fields {
		if hdr, found = evt.Parsed[f]; found {
			break
		}
	}
	if !found {
		return false
	}
	peer, err := netip.ParseAddr(src)
	if err != nil || !r.trusted(peer.Unmap()) {
		return true // not from a proxy: the header is anyone's text
	}
	client, st := r.client(hdr)
	switch {
	case st == hopsBad:
		r.refused.Add(1)
	case st == hopsOK && client != peer.Unmap():
		evt.Meta["source_ip"] = client.String()
		evt.Meta["proxy_ip"] = peer.Unmap().String()
		r.rewritten.Add(1)
	}
	return true
}

// What a header's hops said.
const (
	hopsNone = iota // no header ("-" or empty): the proxy's own request
	hopsOK          // a client
	hopsBad         // no client could be read
)

// client walks the header's hops from the right, the nearest first: each
// trusted proxy vouches for the hop to its left, and the first hop that is
// not a trusted proxy is the client. A hop that is not an address stops
// the walk with no client (the peer stays), as nginx's real_ip does; so
// does a header with more hops than maxForwardedHops, all trusted. When
// every hop is a trusted proxy the left-most is the client.
func (r *proxyRule) client(hdr string) (netip.Addr, int) {
	hdr = strings.TrimSpace(hdr)
	if hdr == "" || hdr == "-" {
		return netip.Addr{}, hopsNone
	}
	if len(hdr) > maxForwardedBytes {
		// The right end is what trusted proxies wrote; a hop cut in two
		// at the left is not an address and stops the walk there.
		hdr = hdr[len(hdr)-maxForwardedBytes:]
	}
	var last netip.Addr
	for i := 0; i < maxForwardedHops; i++ {
		j := strings.LastIndexByte(hdr, ',')
		hop := hdr[j+1:]
		a, ok := r.hopAddr(hop)
		if !ok {
			return netip.Addr{}, hopsBad
		}
		if !r.trusted(a) {
			return a, hopsOK
		}
		last = a
		if j < 0 {
			return last, hopsOK
		}
		hdr = hdr[:j]
	}
	return netip.Addr{}, hopsBad
}

// hopAddr reads one hop: an address, with a port ("192.0.2.1:4711",
// "[2001:db8::1]:443") as some proxies write it, or for Forwarded the
// for= parameter of the element (quoted, brackets around IPv6).
func (r *proxyRule) hopAddr(hop string) (netip.Addr, bool) {
	hop = strings.TrimSpace(hop)
	if r.rfc7239 {
		v, ok := forwardedFor(hop)
		if !ok {
			return netip.Addr{}, false
		}
		hop = v
	}
	if hop == "" || len(hop) > 64 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(hop)
	if err != nil {
		ap, err := netip.ParseAddrPort(hop)
		if err != nil {
			if strings.HasPrefix(hop, "[") && strings.HasSuffix(hop, "]") {
				a, err = netip.ParseAddr(hop[1 : len(hop)-1])
			}
			if err != nil {
				return netip.Addr{}, false
			}
		} else {
			a = ap.Addr()
		}
	}
	// A zone names an interface of the proxy's host, not a client.
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// forwardedFor is the for= value of one Forwarded element
// (`for=192.0.2.60;proto=http;by=203.0.113.43`), unquoted.
func forwardedFor(elem string) (string, bool) {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "for") {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// ProxyStats counts what the trusted-proxy rewrite did.
type ProxyStats struct {
	// Rewritten are events whose source a trusted proxy's header set.
	Rewritten uint64
	// Refused are events from a trusted proxy whose header named no
	// client (not an address, too many hops): the proxy stayed the source.
	Refused uint64
}

// ProxyStats returns the trusted-proxy counters, zero when none is set.
func (p *Pipeline) ProxyStats() ProxyStats {
	if p.proxy == nil {
		return ProxyStats{}
	}
	return ProxyStats{Rewritten: p.proxy.rewritten.Load(), Refused: p.proxy.refused.Load()}
}
