package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// writeServerCert writes a self-signed certificate for ips and its key,
// and returns their paths; the certificate is its own CA for the agents.
func writeServerCert(t *testing.T, dir string, ips ...string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "moat fleet test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(k)
	must(t, err)
	cert, key = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	must(t, os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return cert, key
}

func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString(text)
	must(t, err)
	must(t, f.Close())
}

// setWatch follows `nft monitor` in a namespace and stamps the moment
// each address joins set ban4.
type setWatch struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	probe bool
}

var monitorAddr = regexp.MustCompile(`\b198\.19\.\d+\.\d+\b`)

func watchBan4(t *testing.T, ns *testutil.NetNS) *setWatch {
	t.Helper()
	w := &setWatch{seen: map[string]time.Time{}}
	cmd := ns.Command("nft", "monitor", "new", "elements")
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			at := time.Now()
			line := sc.Text()
			w.mu.Lock()
			if strings.HasPrefix(line, "add element inet moatfltest ") {
				w.probe = true
			}
			if !strings.HasPrefix(line, "add element inet moat ban4 ") {
				w.mu.Unlock()
				continue
			}
			for _, a := range monitorAddr.FindAllString(line, -1) {
				if _, ok := w.seen[a]; !ok {
					w.seen[a] = at
				}
			}
			w.mu.Unlock()
		}
	}()
	// The monitor takes a moment to subscribe: elements added to a set
	// of the test's own until it shows one say it is listening.
	ns.Run(t, "nft", "add table inet moatfltest")
	ns.Run(t, "nft", "add set inet moatfltest probe { type ipv4_addr; }")
	// Each probe a new element (re-adding one announces nothing), for up
	// to 20 s: on a loaded machine the monitor can take seconds to start.
	deadline := time.Now().Add(20 * time.Second)
	for i := 1; ; i++ {
		ns.Run(t, "nft", fmt.Sprintf("add element inet moatfltest probe { 10.%d.%d.1 }", i/250, i%250))
		w.mu.Lock()
		ok := w.probe
		w.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nft monitor shows nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w
}

func (w *setWatch) at(addr string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.seen[addr]
	return at, ok
}

// TestFleetPropagation runs a fleet server and two agents, each moat in a
// namespace of its own linked to the server's by a veth pair: a brute
// force in agent A's log only gets the attacker banned in agent B's
// kernel, through A's push and the server's stream. It measures that
// propagation (A's log line to B's set) over 200 attackers, then stops
// the server (B keeps its bans), starts it again and bans by hand there
// (B gets it once its stream is back).
func TestFleetPropagation(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: three daemons and 200 attackers")
	}
	const attackers = 200
	srvNS, aNS, bNS := testutil.NewNetNS(t), testutil.NewNetNS(t), testutil.NewNetNS(t)
	// Deleting each namespace at cleanup removes its veth end, and the
	// peer with it, pass or fail.
	testutil.VethPair(t, srvNS, aNS, []string{"198.18.10.1/24"}, []string{"198.18.10.2/24"})
	testutil.VethPair(t, srvNS, bNS, []string{"198.18.11.1/24"}, []string{"198.18.11.2/24"})

	server := newE2EHost(t, srvNS, nil)
	cert, key := writeServerCert(t, server.dir, "198.18.10.1", "198.18.11.1")
	appendConfig(t, server.cfgPath, fmt.Sprintf("server:\n  enabled: true\n  listen: 0.0.0.0:8089\n  tls:\n    cert: %s\n    key: %s\n", cert, key))
	srvD := startDaemon(t, server)

	agentHost := func(ns *testutil.NetNS, id, serverIP string) *e2eHost {
		h := newE2EHost(t, ns, nil)
		var added struct {
			Password string `json:"password"`
		}
		out := moatIn(t, srvNS, "machines", "add", id, "--config", server.cfgPath, "-o", "json")
		if err := json.Unmarshal([]byte(out), &added); err != nil || added.Password == "" {
			t.Fatalf("moat machines add %s: %v: %s", id, err, out)
		}
		appendConfig(t, h.cfgPath, fmt.Sprintf("fleet:\n  server: https://%s:8089\n  machine_id: %s\n  password: %q\n  ca_file: %s\n", serverIP, id, added.Password, cert))
		return h
	}
	hostA, hostB := agentHost(aNS, "agent-a", "198.18.10.1"), agentHost(bNS, "agent-b", "198.18.11.1")
	startDaemon(t, hostA)
	dB := startDaemon(t, hostB)
	waitFor(t, 20*time.Second, "agent B's fleet stream", func() bool { return strings.Contains(dB.stderr.String(), "fleet stream connected") })
	watch := watchBan4(t, bNS)

	written := make(map[string]time.Time, attackers)
	var order []string
	for i := range attackers {
		ip := fmt.Sprintf("198.19.%d.%d", 1+i/250, 1+i%250)
		written[ip] = time.Now()
		order = append(order, ip)
		// One write per attacker: the sixth failure overflows ssh-bf.
		hostA.appendLines(t, repeatLine("Failed password for root from "+ip+" port 4000 ssh2", 6)...)
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d attackers in agent B's ban4", attackers), func() bool {
		for _, ip := range order {
			if _, ok := watch.at(ip); !ok {
				return false
			}
		}
		return true
	})
	lat := make([]time.Duration, 0, attackers)
	for _, ip := range order {
		at, _ := watch.at(ip)
		lat = append(lat, at.Sub(written[ip]))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
	t.Logf("fleet propagation, agent A's log line to agent B's nft set, over %d attackers: p50 %.1f ms, p99 %.1f ms, max %.1f ms (target p99 < 50 ms)",
		attackers, msOf(p50), msOf(p99), msOf(lat[len(lat)-1]))
	// Sanity bounds only: three daemons share two cores with the rest of
	// the suite here, whose load stretches the tail (p99 over a second at
	// a load average of 15). A median past 200 ms is no load: the stream
	// is not woken by the store and waits for its one-second poll.
	if p50 > 200*time.Millisecond || p99 > 5*time.Second {
		t.Errorf("p50 %.1f ms, p99 %.1f ms: the path is broken, not just slow", msOf(p50), msOf(p99))
	}
	if n := strings.Count(nftSet(t, srvNS, "ban4"), "198.19."); n != attackers {
		t.Errorf("%d attackers in the server's ban4, want %d", n, attackers)
	}

	// Fail static: the server goes away, B keeps every fleet ban.
	if err := srvD.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("server stop: %v", err)
	}
	waitFor(t, 40*time.Second, "agent B to lose its stream", func() bool { return strings.Contains(dB.stderr.String(), "fleet stream closed") })
	time.Sleep(3 * time.Second)
	if n := strings.Count(nftSet(t, bNS, "ban4"), "198.19."); n != attackers {
		t.Fatalf("agent B holds %d fleet bans with the server down, want %d", n, attackers)
	}

	// Back: a ban made by hand on the server reaches B over the new stream.
	startDaemonIn(t, srvNS, server.cfgPath)
	moatIn(t, srvNS, "decisions", "add", "--ip", "198.19.250.250", "--config", server.cfgPath)
	waitFor(t, 60*time.Second, "the server's manual ban in agent B's ban4", func() bool {
		_, ok := watch.at("198.19.250.250")
		return ok
	})
	var ds []struct {
		Value  string `json:"value"`
		Origin string `json:"origin"`
	}
	out := moatIn(t, bNS, "decisions", "list", "--all", "--config", hostB.cfgPath, "-o", "json")
	must(t, json.Unmarshal([]byte(out), &ds))
	fleet := 0
	for _, d := range ds {
		if d.Origin == "fleet" {
			fleet++
		}
	}
	if fleet != attackers+1 {
		t.Fatalf("agent B holds %d fleet decisions, want %d: one per server decision, none twice", fleet, attackers+1)
	}
	// A's own bans come back by the stream and are not held twice there.
	waitFor(t, 60*time.Second, "the server's manual ban in agent A's ban4", func() bool {
		return strings.Contains(nftSet(t, aNS, "ban4"), "198.19.250.250")
	})
	ds = nil
	out = moatIn(t, aNS, "decisions", "list", "--all", "--config", hostA.cfgPath, "-o", "json")
	must(t, json.Unmarshal([]byte(out), &ds))
	byOrigin := map[string]int{}
	for _, d := range ds {
		byOrigin[d.Origin]++
	}
	if byOrigin["local"] != attackers || byOrigin["fleet"] != 1 {
		t.Fatalf("agent A holds %v decisions by origin, want %d local and only the manual ban from the fleet", byOrigin, attackers)
	}
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
