package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/testutil"
)

// dialFrom connects from src, one of ns's addresses, to addr:port and
// reads the listener's greeting.
func dialFrom(ns *testutil.NetNS, src, addr string, port int) error {
	return ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 3))
		return err
	})
}

// TestCountryBanInNamespaces: with a City database built for the test, a
// Country decision drops the traffic of that country's addresses in the
// kernel, but not of an allowlisted address inside it, nor the host's own
// or loopback; an address of an allowlisted country is protected, and
// moat allowlist check names the entry. Without the ASN database an AS
// decision is refused when it is added.
func TestCountryBanInNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	victim, attacker, innocent := testutil.NewNetNS(t), testutil.NewNetNS(t), testutil.NewNetNS(t)
	testutil.VethPair(t, attacker, victim, []string{"198.18.1.2/24", "198.18.1.7/24", "2001:db8:1::2/64"}, []string{"198.18.1.1/24", "2001:db8:1::1/64"})
	testutil.VethPair(t, innocent, victim, []string{"198.18.2.2/24"}, []string{"198.18.2.1/24"})

	dir := t.TempDir()
	city, _ := testutil.WriteGeoIP(t, dir, []testutil.GeoRecord{
		// The attacker's link, the victim's own address on it included.
		{Network: "198.18.1.0/24", Country: "CN"},
		{Network: "2001:db8:1::/48", Country: "CN"},
		// A database may place loopback anywhere: moat never bans it.
		{Network: "127.0.0.0/16", Country: "CN"},
		{Network: "198.18.2.0/24", Country: "FR", ASN: 64502},
	})
	// 198.18.1.7 is allowlisted inside CN; all of FR is.
	host := newE2EHost(t, victim, []string{"198.18.1.7", "\"country:FR\""})
	cfg, err := os.ReadFile(host.cfgPath)
	must(t, err)
	must(t, os.WriteFile(host.cfgPath, append(cfg, "geoip:\n  city: "+strconv.Quote(city)+"\n"...), 0o644))
	port := listenTCP(t, victim)
	startDaemon(t, host)

	type client struct {
		ns        *testutil.NetNS
		src, addr string
	}
	attacker4, attacker6 := client{attacker, "198.18.1.2", "198.18.1.1"}, client{attacker, "2001:db8:1::2", "2001:db8:1::1"}
	allowed, french := client{attacker, "198.18.1.7", "198.18.1.1"}, client{innocent, "198.18.2.2", "198.18.2.1"}
	self, loopback := client{victim, "198.18.1.1", "198.18.1.1"}, client{victim, "127.0.0.1", "127.0.0.1"}
	for _, c := range []client{attacker4, attacker6, allowed, french, self, loopback} {
		waitFor(t, 5*time.Second, "a connection from "+c.src+" before any ban", func() bool {
			return dialFrom(c.ns, c.src, c.addr, port) == nil
		})
	}

	moat := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := runMoat(t, "", append(args, "-c", host.cfgPath)...)
		if code != want {
			t.Fatalf("moat %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out, errOut)
		}
		return out + errOut
	}
	moat(exitOK, "decisions", "add", "--scope", "country", "--value", "cn", "--reason", "test")
	waitFor(t, 10*time.Second, "the country's ban to drop the attacker", func() bool {
		return dialFrom(attacker4.ns, attacker4.src, attacker4.addr, port) != nil
	})
	if err := dialFrom(attacker, attacker6.src, attacker6.addr, port); err == nil {
		t.Error("the country's IPv6 network still connects")
	}
	for _, c := range []client{allowed, french, self, loopback} {
		if err := dialFrom(c.ns, c.src, c.addr, port); err != nil {
			t.Errorf("%s is blocked by the country ban: %v", c.src, err)
		}
	}

	var check api.AllowCheck
	must(t, json.Unmarshal([]byte(moat(exitOK, "allowlist", "check", "198.18.2.2", "-o", "json")), &check))
	if !check.Protected || len(check.Entries) != 1 || check.Entries[0].Value != "country:FR" || check.Entries[0].Prefix.String() != "198.18.2.0/24" {
		t.Errorf("allowlist check 198.18.2.2 = %+v, want protected by country:FR through 198.18.2.0/24", check)
	}
	if out := moat(exitOK, "allowlist", "check", "198.18.2.2", "-o", "table"); !strings.Contains(out, "country:FR") || !strings.Contains(out, "is protected by 1 allowlist entry") {
		t.Errorf("allowlist check table:\n%s", out)
	}
	if out := moat(exitFailure, "decisions", "add", "--ip", "198.18.2.2"); !strings.Contains(out, "allowlisted") {
		t.Errorf("a ban on an address of an allowlisted country: %s", out)
	}
	if out := moat(exitUsage, "decisions", "add", "--scope", "as", "--value", "64502"); !strings.Contains(out, "geoip.asn") {
		t.Errorf("an AS decision without an ASN database: %s", out)
	}

	var st api.Status
	must(t, json.Unmarshal([]byte(moat(exitOK, "status", "-o", "json")), &st))
	if st.GeoIP == nil || st.GeoIP.City != city || st.GeoIP.ASN != "" || st.GeoIP.Decisions != 1 || st.GeoIP.Ranges == 0 {
		t.Errorf("status GeoIP = %+v, want the City database and one country decision", st.GeoIP)
	}
	if out := moat(exitOK, "status", "-o", "table"); !strings.Contains(out, "GeoIP: loaded (city "+city+")") {
		t.Errorf("status table does not say GeoIP is loaded from %s:\n%s", city, out)
	}
	if out := moat(exitOK, "decisions", "list", "-o", "table"); !strings.Contains(out, "Country:CN") {
		t.Errorf("decisions list:\n%s", out)
	}

	moat(exitOK, "decisions", "delete", "--scope", "country", "--value", "cn")
	waitFor(t, 10*time.Second, "the attacker to connect once the country's ban is deleted", func() bool {
		return dialFrom(attacker, attacker4.src, attacker4.addr, port) == nil
	})
	if set := nftSet(t, victim, "ban4_range") + nftSet(t, victim, "ban6_range"); strings.Contains(set, "198.18.1.") || strings.Contains(set, "2001:db8:1:") {
		t.Errorf("ranges left in the kernel after the delete:\n%s", set)
	}

	// The status page groups the attackers by country from the same
	// database.
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf("Failed password for root from 198.18.1.2 port %d ssh2", 45000+i))
	}
	host.appendLines(t, lines...)
	waitFor(t, 10*time.Second, "the status page to count an attacker from CN", func() bool {
		return strings.Contains(scrape(t, victim, "http://127.0.0.1:9641/"), "<span>CN</span>")
	})
}
