package config

import (
	"net/netip"
	"slices"
	"testing"
)

func TestHTTPTrustedProxies(t *testing.T) {
	want := map[string]string{
		"bad-entry.bad.yaml":       `testdata/http/bad-entry.bad.yaml:4: trusted_proxies entry "10.0.0.0/33": want an address or CIDR range`,
		"everyone.bad.yaml":        `testdata/http/everyone.bad.yaml:2: trusted_proxies entry "::/0" trusts every address: any client could then choose the address moat bans`,
		"everyone-mapped.bad.yaml": `testdata/http/everyone-mapped.bad.yaml:3: trusted_proxies entry "::ffff:0.0.0.0/96" trusts every address: any client could then choose the address moat bans`,
		"header.bad.yaml":          `testdata/http/header.bad.yaml:3: client_ip_header "X-Forwarded-For: 1.2.3.4": want a header name such as X-Forwarded-For`,
		"unknown-key.bad.yaml":     `testdata/http/unknown-key.bad.yaml:2: unknown key "trusted_proxy"`,
	}
	checkBadConfigs(t, "testdata/http", want)
	cfg, err := Load("testdata/http/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantPrefixes := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.10/32"),
		netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("2001:db8:1::/48"),
	}
	if got := cfg.HTTP.Proxies(); !slices.Equal(got, wantPrefixes) || cfg.HTTP.ClientIPHeader != DefaultClientIPHeader {
		t.Errorf("proxies %v header %q, want %v %q", got, cfg.HTTP.ClientIPHeader, wantPrefixes, DefaultClientIPHeader)
	}
	if d := Default(); len(d.HTTP.Proxies()) != 0 || d.HTTP.ClientIPHeader != DefaultClientIPHeader {
		t.Errorf("default http section %+v: want no proxies", d.HTTP)
	}
}
