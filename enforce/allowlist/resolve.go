package allowlist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Resolver looks a hostname up and says how long the answer holds.
type Resolver interface {
	Resolve(ctx context.Context, host string) ([]netip.Addr, time.Duration, error)
}

// Bounds of the time between two lookups of a name: a zero TTL must not
// make a lookup loop, and a day-long TTL must not keep an address
// protected after the name has moved for good.
const (
	MinTTL = time.Second
	MaxTTL = time.Hour
	// negativeTTL is how long a name that does not exist is believed
	// when the server gives no SOA to say.
	negativeTTL = 30 * time.Second
)

// DNS asks DNS servers directly, which the system resolver in Go's
// standard library does not allow, to learn each answer's TTL.
type DNS struct {
	// Servers are host:port, asked in order until one answers.
	Servers []string
	Timeout time.Duration
}

// SystemDNS is a DNS resolver over the name servers of resolvConf
// (/etc/resolv.conf).
func SystemDNS(resolvConf string) (*DNS, error) {
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("system resolver: %w", err)
	}
	if len(cc.Servers) == 0 {
		return nil, fmt.Errorf("system resolver: %s lists no nameserver", resolvConf)
	}
	d := &DNS{Timeout: time.Duration(cc.Timeout) * time.Second}
	for _, s := range cc.Servers {
		d.Servers = append(d.Servers, net.JoinHostPort(s, cc.Port))
	}
	return d, nil
}

// System resolves with the name servers ResolvConf lists at the time of
// each lookup, so a change of servers (DHCP, a VPN) is followed.
type System struct {
	ResolvConf string
}

func (s System) Resolve(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	d, err := SystemDNS(s.ResolvConf)
	if err != nil {
		return nil, 0, fmt.Errorf("resolve %s: %w", host, err)
	}
	return d.Resolve(ctx, host)
}

// Resolve returns the A and AAAA addresses of host and the smallest TTL
// of the records that led to them. A name that does not exist resolves to
// no address.
func (d *DNS) Resolve(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	var errs []error
	for _, srv := range d.Servers {
		addrs, ttl, err := d.ask(ctx, srv, host)
		if err == nil {
			return addrs, ttl, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, 0, fmt.Errorf("resolve %s: no DNS server configured", host)
	}
	return nil, 0, fmt.Errorf("resolve %s: %w", host, errors.Join(errs...))
}

func (d *DNS) ask(ctx context.Context, srv, host string) ([]netip.Addr, time.Duration, error) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	var addrs []netip.Addr
	ttl := MaxTTL
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(host), qt)
		r, _, err := (&dns.Client{Timeout: timeout}).ExchangeContext(ctx, q, srv)
		if err == nil && r.Truncated {
			r, _, err = (&dns.Client{Net: "tcp", Timeout: timeout}).ExchangeContext(ctx, q, srv)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", srv, err)
		}
		switch r.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			return nil, negative(r), nil
		default:
			return nil, 0, fmt.Errorf("%s: %s", srv, dns.RcodeToString[r.Rcode])
		}
		for _, rr := range r.Answer {
			var a netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(v.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(v.AAAA.To16())
			case *dns.CNAME:
			default:
				continue
			}
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
			if a.IsValid() {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	return addrs, ttl, nil
}

// negative is how long a "no such name" answer holds: its SOA's minimum.
func negative(r *dns.Msg) time.Duration {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return negativeTTL
}

// clampTTL keeps ttl within MinTTL and MaxTTL.
func clampTTL(ttl time.Duration) time.Duration {
	return min(max(ttl, MinTTL), MaxTTL)
}
