package config

import (
	"fmt"
	"net/netip"
	"regexp"

	"github.com/moatsec/moat/internal/yamlerr"
)

// HTTP tunes how HTTP access logs are read. Behind a reverse proxy or a
// load balancer every request is logged from the proxy's address; with the
// proxies listed here, a line whose logged peer is one of them takes its
// client from ClientIPHeader instead (the right-most address in it that is
// not itself a listed proxy). From any other peer the header is ignored:
// anyone can send it, with any address in it.
type HTTP struct {
	// TrustedProxies are addresses and ranges ("10.0.0.0/8", "::1").
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ClientIPHeader names the header the proxies set and the web server
	// logs: X-Forwarded-For (the default), X-Real-IP or Forwarded.
	ClientIPHeader string `yaml:"client_ip_header"`
}

// DefaultClientIPHeader is the header read when none is configured.
const DefaultClientIPHeader = "X-Forwarded-For"

// headerName is an HTTP header name as parsers capture it: a token of
// letters, digits and dashes.
var headerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

func (c *Config) validateHTTP(bad func(msg string, keys ...any) error) error {
	h := c.HTTP
	if !headerName.MatchString(h.ClientIPHeader) {
		return bad(fmt.Sprintf("client_ip_header %s: want a header name such as X-Forwarded-For", yamlerr.Excerpt(h.ClientIPHeader)), "http", "client_ip_header")
	}
	for i, s := range h.TrustedProxies {
		p, err := ParsePrefix(s)
		if err != nil {
			return bad(fmt.Sprintf("trusted_proxies entry %s: want an address or CIDR range", yamlerr.Excerpt(s)), "http", "trusted_proxies", i)
		}
		if p.Bits() == 0 {
			// Trusting every peer would let any client write the
			// address moat bans into the header.
			return bad(fmt.Sprintf("trusted_proxies entry %s trusts every address: any client could then choose the address moat bans", yamlerr.Excerpt(s)), "http", "trusted_proxies", i)
		}
	}
	return nil
}

// Proxies are the trusted proxies parsed; a loaded configuration has been
// validated, so nothing is left out.
func (h HTTP) Proxies() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(h.TrustedProxies))
	for _, s := range h.TrustedProxies {
		if p, err := ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
