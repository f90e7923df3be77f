package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// replicaFleet is two fleet server replicas on one PostgreSQL store, three
// agents each listing both, and an attacker namespace routed to the agents.
type replicaFleet struct {
	servers  [2]*testutil.NetNS
	srvHosts [2]*e2eHost
	srvProcs [2]*daemonProc
	agents   [3]*e2eHost
	procs    [3]*daemonProc
	// urls[i][j] is agent i's URL of replica j: one link per pair.
	urls     [3][2]string
	attacker *testutil.NetNS
	// target[i] is agent i's address on its link to the attacker and
	// port a listener there accepts on.
	target [3]string
	port   [3]int
}

// newReplicaFleet builds the namespaces, links and daemons. Every
// namespace is deleted at cleanup, pass or fail, taking its veth ends and
// their peers with it.
func newReplicaFleet(t *testing.T) *replicaFleet {
	f := &replicaFleet{attacker: testutil.NewNetNS(t)}
	pg := testutil.StartPostgres(t)
	// The daemons reach PostgreSQL by its unix socket: 127.0.0.1 inside a
	// namespace is not the cluster's.
	dsn := (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/" + pg.Database,
		RawQuery: url.Values{"host": {pg.Dir}, "port": {strconv.Itoa(pg.Port)}, "sslmode": {"disable"}}.Encode()}).String()
	var agentNS [3]*testutil.NetNS
	for i := range agentNS {
		agentNS[i] = testutil.NewNetNS(t)
	}
	var ips []string
	for j := range f.servers {
		f.servers[j] = testutil.NewNetNS(t)
		for i := range agentNS {
			n := 1 + j*3 + i
			srvIP, agentIP := fmt.Sprintf("198.18.%d.1", n), fmt.Sprintf("198.18.%d.2", n)
			testutil.VethPair(t, f.servers[j], agentNS[i], []string{srvIP + "/24"}, []string{agentIP + "/24"})
			f.urls[i][j] = "https://" + srvIP + ":8089"
			ips = append(ips, srvIP)
		}
	}
	// Attackers come from 198.19.0.0/16, local on the attacker's
	// loopback, routed by each agent back over its link.
	f.attacker.Run(t, "ip", "addr", "add", "198.19.0.0/16", "dev", "lo")
	for i, ns := range agentNS {
		n := 20 + i
		testutil.VethPair(t, f.attacker, ns, []string{fmt.Sprintf("198.18.%d.1/24", n)}, []string{fmt.Sprintf("198.18.%d.2/24", n)})
		ns.Run(t, "ip", "route", "add", "198.19.0.0/16", "via", fmt.Sprintf("198.18.%d.1", n))
		f.target[i], f.port[i] = fmt.Sprintf("198.18.%d.2", n), listenTCP(t, ns)
	}

	var cert, key string
	for j, ns := range f.servers {
		h := newE2EHost(t, ns, nil)
		if j == 0 {
			cert, key = writeServerCert(t, h.dir, ips...)
		}
		appendConfig(t, h.cfgPath, fmt.Sprintf("store:\n  dsn: %q\nserver:\n  enabled: true\n  listen: 0.0.0.0:8089\n  tls:\n    cert: %s\n    key: %s\n", dsn, cert, key))
		f.srvHosts[j], f.srvProcs[j] = h, startDaemon(t, h)
	}
	for i, ns := range agentNS {
		id := fmt.Sprintf("agent-%c", 'a'+i)
		var added struct {
			Password string `json:"password"`
		}
		out := moatIn(t, f.servers[0], "machines", "add", id, "--config", f.srvHosts[0].cfgPath, "-o", "json")
		if err := json.Unmarshal([]byte(out), &added); err != nil || added.Password == "" {
			t.Fatalf("moat machines add %s: %v: %s", id, err, out)
		}
		h := newE2EHost(t, ns, nil)
		appendConfig(t, h.cfgPath, fmt.Sprintf("fleet:\n  servers: [%s, %s]\n  machine_id: %s\n  password: %q\n  ca_file: %s\n",
			f.urls[i][0], f.urls[i][1], id, added.Password, cert))
		f.agents[i], f.procs[i] = h, startDaemon(t, h)
	}
	for i := range f.agents {
		f.waitStream(t, i, 0)
	}
	return f
}

// waitStream waits for agent i's stream to replica j.
func (f *replicaFleet) waitStream(t *testing.T, i, j int) {
	t.Helper()
	re := regexp.MustCompile(`fleet stream connected.*` + regexp.QuoteMeta(f.urls[i][j]))
	waitFor(t, 60*time.Second, fmt.Sprintf("agent %d's stream to replica %d", i, j), func() bool {
		return re.MatchString(f.procs[i].stderr.String())
	})
}

// attackIP is the address of attack n.
func attackIP(n int) string { return fmt.Sprintf("198.19.%d.%d", 1+n/250, 1+n%250) }

// attack writes attack n's brute force in agent A's log and returns when.
func (f *replicaFleet) attack(t *testing.T, n int) time.Time {
	at := time.Now()
	// One write: the sixth failure overflows ssh-bf.
	f.agents[0].appendLines(t, repeatLine("Failed password for root from "+attackIP(n)+" port 4000 ssh2", 6)...)
	return at
}

// connects reports whether attack n's address gets a TCP connection to
// agent i's listener.
func (f *replicaFleet) connects(n, i int) bool {
	return f.attacker.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackIP(n))}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(f.target[i], strconv.Itoa(f.port[i])))
		if err != nil {
			return err
		}
		return c.Close()
	}) == nil
}

// heldOnce checks that agent i's kernel set holds attacks [0, n) and its
// store each as one fleet decision (A: one local one).
func (f *replicaFleet) heldOnce(t *testing.T, i, n int) {
	t.Helper()
	h := f.agents[i]
	set := nftSet(t, h.ns, "ban4")
	var ds []struct {
		Value  string `json:"value"`
		Origin string `json:"origin"`
	}
	must(t, json.Unmarshal([]byte(moatIn(t, h.ns, "decisions", "list", "--all", "--config", h.cfgPath, "-o", "json")), &ds))
	count := map[string]int{}
	for _, d := range ds {
		count[strings.TrimSuffix(d.Value, "/32")]++
	}
	var missing, twice []string
	for k := range n {
		ip := attackIP(k)
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(ip) + `\b`).MatchString(set) {
			missing = append(missing, ip)
		}
		if count[ip] != 1 {
			twice = append(twice, fmt.Sprintf("%s ×%d", ip, count[ip]))
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Errorf("agent %d: %d attacks missing from ban4 %v; %d not held exactly once %v", i, len(missing), head5(missing), len(twice), head5(twice))
	}
}

func head5(s []string) []string { return s[:min(len(s), 5)] }

// TestFleetReplicas: three agents on two server replicas sharing one
// PostgreSQL store. A brute force seen only by agent A gets the attacker
// dropped by B and C too (propagation to C measured over 200 attacks);
// the replica the agents stream from is killed mid-run and they move to
// the other, missing nothing; C stopped while A is attacked catches up
// when it starts again.
func TestFleetReplicas(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: five daemons, PostgreSQL and 350 attacks")
	}
	f := newReplicaFleet(t)
	const first, second, third = 200, 300, 350
	for i := range f.agents {
		if !f.connects(0, i) {
			t.Fatalf("the attacker does not reach agent %d before any ban", i)
		}
	}
	watch := watchBan4(t, f.agents[2].ns)
	written := make([]time.Time, first)
	for n := range first {
		written[n] = f.attack(t, n)
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, 60*time.Second, "the first attacks in agent C's ban4", func() bool {
		_, ok := watch.at(attackIP(first - 1))
		return ok
	})
	lat := make([]time.Duration, 0, first)
	for n := range first {
		at, ok := watch.at(attackIP(n))
		if !ok {
			t.Fatalf("attack %d never reached agent C's ban4", n)
		}
		lat = append(lat, at.Sub(written[n]))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[(len(lat)*99+99)/100-1]
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("fleet propagation over replicas, agent A's log line to agent C's nft set, %d attacks: p50 %.1f ms, p99 %.1f ms, max %.1f ms (target p99 < 50 ms); load average %s",
		first, msOf(p50), msOf(p99), msOf(lat[len(lat)-1]), strings.TrimSpace(string(load)))
	// Sanity bounds only, as in TestFleetPropagation: the machine is
	// shared, and a median past 200 ms is a stream not woken by the store.
	if p50 > 200*time.Millisecond || p99 > 5*time.Second {
		t.Errorf("p50 %.1f ms, p99 %.1f ms: the path is broken, not just slow", msOf(p50), msOf(p99))
	}
	for i := range f.agents {
		if f.connects(0, i) {
			t.Errorf("attack 0's address still connects to agent %d", i)
		}
	}

	// kill -9 the replica every agent streams from, mid-run.
	const kill = (first + second) / 2
	var killed time.Time
	written = append(written, make([]time.Time, second-first)...)
	for n := first; n < second; n++ {
		if n == kill {
			killed = time.Now()
			if err := f.srvProcs[0].stop(t, syscall.SIGKILL); err == nil {
				t.Fatal("a killed replica exited cleanly")
			}
		}
		written[n] = f.attack(t, n)
		time.Sleep(20 * time.Millisecond)
	}
	for i := range f.agents {
		f.waitStream(t, i, 1)
	}
	waitFor(t, 60*time.Second, "the attacks after the kill in agent C's ban4", func() bool {
		_, ok := watch.at(attackIP(second - 1))
		return ok
	})
	after := make([]time.Duration, 0, second-kill)
	for n := kill; n < second; n++ {
		if at, ok := watch.at(attackIP(n)); ok {
			after = append(after, at.Sub(written[n]))
		}
	}
	slices.Sort(after)
	firstAt, _ := watch.at(attackIP(kill))
	t.Logf("replica killed at attack %d: the %d attacks from the kill on reached agent C's set, the first %.1f ms after its log line (%.1f ms after the kill), p50 %.1f ms, max %.1f ms",
		kill, len(after), msOf(firstAt.Sub(written[kill])), msOf(firstAt.Sub(killed)), msOf(after[len(after)/2]), msOf(after[len(after)-1]))
	for _, i := range []int{1, 2} {
		waitFor(t, 60*time.Second, fmt.Sprintf("every attack of the run in agent %d's ban4", i), func() bool {
			return strings.Contains(nftSet(t, f.agents[i].ns, "ban4"), attackIP(second-1))
		})
		f.heldOnce(t, i, second)
	}

	// C stopped while A is attacked: it catches up when it starts.
	if err := f.procs[2].stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("agent C stop: %v", err)
	}
	for n := second; n < third; n++ {
		f.attack(t, n)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	f.procs[2] = startDaemon(t, f.agents[2])
	for _, i := range []int{1, 2} {
		waitFor(t, 60*time.Second, fmt.Sprintf("the attacks made while C was down in agent %d's ban4", i), func() bool {
			return strings.Contains(nftSet(t, f.agents[i].ns, "ban4"), attackIP(third-1))
		})
		f.heldOnce(t, i, third)
		if f.connects(third-1, i) {
			t.Errorf("the last attack's address still connects to agent %d", i)
		}
	}
}
