package bench

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PeerLatency is a peer's live path beside moat's: the attack lines of
// moat's latency measurement written to the log the peer tails, timed to
// the attacker's address in the peer's firewall set.
type PeerLatency struct {
	Peer    string `json:"peer"`
	Version string `json:"version"`
	// UpdateFrequency is the bouncer's poll interval used (the shortest
	// the bouncer took; its default is 10s).
	UpdateFrequency string    `json:"update_frequency"`
	Attacks         int       `json:"attacks"`
	Misses          int       `json:"misses"`
	P50             float64   `json:"p50_ms"`
	P99             float64   `json:"p99_ms"`
	Max             float64   `json:"max_ms"`
	Samples         []float64 `json:"samples_ms"`
	// Moat is moat's file → nftables figure of the same run (pooled):
	// line written to the attacker's packets dropped, a later point than
	// the peer's (its address in the set).
	Moat struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"moat_ms"`
	// Ratio is the peer's p50 over moat's: how many times faster moat is.
	Ratio float64 `json:"p50_ratio"`
}

const (
	// csLiveListen is the LAPI's address, on the namespace's loopback.
	csLiveListen = "127.0.0.1:8080"
	csLiveTable  = "moatbench-cs"
	csLiveSet    = "crowdsec-blacklists"
	// csUpdateFrequency is the bouncer's poll interval (its default is
	// 10s). The bouncer documents no lower bound; at 100ms the poll adds
	// at most a tenth of what crowdsec's agent already waits (it pushes
	// its alerts to the LAPI on a 1 s ticker), and polling faster only
	// loads the LAPI.
	csUpdateFrequency = "100ms"
)

// runPeerLive measures CrowdSec with its firewall bouncer live, when both
// are installed: both run only inside a namespace of the suite's own,
// with nothing but loopback (they phone home), crowdsec with its own LAPI
// and SQLite database in the scratch directory and no online API.
func runPeerLive(ctx context.Context, o *Options, res *Result) error {
	for _, p := range []string{"crowdsec", "crowdsec-firewall-bouncer"} {
		if ok, st := installed(p); !ok {
			res.Skipped = append(res.Skipped, fmt.Sprintf("peerlive: SKIPPED, %s not installed (dpkg: %s); the suite never installs a peer", p, st))
			return nil
		}
	}
	// A quarter of moat's attackers, at least 20: each waits for
	// crowdsec's push ticker and the bouncer's poll, a second or so.
	attacks := max(20, o.Attacks/4)
	pl, err := crowdsecLive(ctx, o, attacks)
	if err != nil {
		return err
	}
	var moat *Latency
	for i := range res.Latency {
		if l := &res.Latency[i]; l.Source == "file" && l.Backend == "nftables" {
			moat = l
		}
	}
	if moat == nil {
		// -only peerlive: moat's figure from one run of its own now.
		logf(o.Log, "peerlive: moat file -> nftables for comparison (%d attackers)", o.Attacks)
		r, err := runLatency(ctx, o, "file", "nftables")
		if err != nil {
			return err
		}
		pl.Moat.P50, pl.Moat.P99, pl.Moat.Max = percentiles(r.Samples)
	} else {
		pl.Moat.P50, pl.Moat.P99, pl.Moat.Max = moat.Pooled.P50, moat.Pooled.P99, moat.Pooled.Max
	}
	if pl.Moat.P50 > 0 {
		pl.Ratio = pl.P50 / pl.Moat.P50
	}
	res.PeerLatency = append(res.PeerLatency, *pl)
	return nil
}

func crowdsecLive(ctx context.Context, o *Options, attacks int) (*PeerLatency, error) {
	dir := filepath.Join(o.WorkDir, "crowdsec-live")
	cfg, err := crowdsecLiveConfig(dir)
	if err != nil {
		return nil, err
	}
	ns, err := newNetNS(ctx, "mb-cs")
	if err != nil {
		return nil, err
	}
	defer ns.del()
	cscli := func(args ...string) error {
		_, err := ns.run(ctx, append([]string{"cscli", "-c", cfg}, args...)...)
		return err
	}
	// Both registrations go straight to the database: before crowdsec
	// starts, so its agent logs in at once.
	if err := cscli("machines", "add", "moat-bench", "--auto", "-f", filepath.Join(dir, "local_api_credentials.yaml")); err != nil {
		return nil, err
	}
	key := "moatbenchbouncerkey0123456789abc"
	if err := cscli("bouncers", "add", "moat-bench-fw", "-k", key); err != nil {
		return nil, err
	}
	logs := &syncBuffer{}
	cs, err := startInNS(ns, logs, "crowdsec", "-c", cfg, "-no-capi")
	if err != nil {
		return nil, err
	}
	defer stopGroup(cs)
	if err := waitUntil(ctx, 60*time.Second, func() bool {
		_, err := ns.run(ctx, "curl", "-s", "-o", "/dev/null", "--max-time", "2", "http://"+csLiveListen+"/")
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("crowdsec's LAPI did not listen: %w\n%s", err, tail(logs.String(), 3000))
	}
	bcfg := filepath.Join(dir, "bouncer.yaml")
	if err := os.WriteFile(bcfg, []byte(fmt.Sprintf(`mode: nftables
pid_dir: %[1]s
update_frequency: %[2]s
daemonize: false
log_mode: stdout
log_level: info
api_url: http://%[3]s/
api_key: %[4]s
disable_ipv6: true
deny_action: DROP
deny_log: false
supported_decisions_types: [ban]
blacklists_ipv4: %[5]s
nftables:
  ipv4: {enabled: true, set-only: false, table: %[6]s, chain: moatbench-cs-chain}
  ipv6: {enabled: false}
prometheus: {enabled: false}
`, dir, csUpdateFrequency, csLiveListen, key, csLiveSet, csLiveTable)), 0o644); err != nil {
		return nil, err
	}
	// The set is watched before the bouncer creates it: nft monitor
	// reports every element the moment the kernel commits it.
	seen := &setWatch{at: map[netip.Addr]time.Time{}}
	mon, err := seen.start(ns)
	if err != nil {
		return nil, err
	}
	defer stopGroup(mon)
	bl := &syncBuffer{}
	b, err := startInNS(ns, bl, "crowdsec-firewall-bouncer", "-c", bcfg)
	if err != nil {
		return nil, err
	}
	defer stopGroup(b)
	if err := waitUntil(ctx, 30*time.Second, func() bool {
		_, err := ns.run(ctx, "nft", "list", "set", "ip", csLiveTable, csLiveSet)
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("the bouncer made no set: %w\n%s", err, tail(bl.String(), 3000))
	}
	w, err := newLineWriter("file", filepath.Join(dir, "auth.log"))
	if err != nil {
		return nil, err
	}
	defer w.close()
	var versions []string
	for _, p := range []string{"crowdsec", "crowdsec-firewall-bouncer"} {
		if v, err := exec.Command("dpkg-query", "-W", "-f=${Version}", p).Output(); err == nil {
			versions = append(versions, string(v))
		}
	}
	pl := &PeerLatency{Peer: "crowdsec + crowdsec-firewall-bouncer (nftables)", Version: strings.Join(versions, " / "), UpdateFrequency: csUpdateFrequency}
	logf(o.Log, "peerlive: crowdsec, %d attackers, bouncer update_frequency %s", attacks, csUpdateFrequency)
	attack := func(ip netip.Addr, wait time.Duration) (time.Duration, error) {
		line := "Failed password for root from " + ip.String() + " port 4000 ssh2"
		for range 5 {
			if err := w.write(line); err != nil {
				return 0, err
			}
		}
		time.Sleep(5 * time.Millisecond)
		if err := w.write(line); err != nil {
			return 0, err
		}
		start := time.Now()
		var lat time.Duration
		err := waitUntil(ctx, wait, func() bool {
			t, ok := seen.get(ip)
			lat = t.Sub(start)
			return ok
		})
		return lat, err
	}
	// The first attack waits for crowdsec to tail the file (it starts
	// reading after its LAPI listens): repeated until it is banned, not
	// counted. Until then no line overflowed, so ssh-bf's blackhole does
	// not hold the repeats back.
	warm := attackerAddr(0)
	for try := 0; ; try++ {
		if _, err := attack(warm, 5*time.Second); err == nil {
			break
		} else if ctx.Err() != nil || try == 12 {
			return nil, fmt.Errorf("crowdsec banned no attacker in a minute: %w\ncrowdsec:\n%s\nbouncer:\n%s", err, tail(logs.String(), 2000), tail(bl.String(), 2000))
		}
	}
	// As moat's measurement: five failures fill ssh-bf, the sixth, timed,
	// overflows it; one attack at a time. Each starts after a random pause
	// of up to a second: started right after the last ban showed, every
	// attack would fall at the same phase of crowdsec's 1 s push ticker
	// and the samples would all be one value.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 1; i <= attacks; i++ {
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		lat, err := attack(attackerAddr(i), 30*time.Second)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			pl.Misses++
		default:
			pl.Samples = append(pl.Samples, float64(lat.Nanoseconds())/1e6)
		}
	}
	pl.Attacks = attacks
	if len(pl.Samples) == 0 {
		return nil, fmt.Errorf("crowdsec banned no attacker\ncrowdsec:\n%s\nbouncer:\n%s", tail(logs.String(), 2000), tail(bl.String(), 2000))
	}
	pl.P50, pl.P99, pl.Max = percentiles(pl.Samples)
	return pl, nil
}

// crowdsecLiveConfig writes crowdsec's configuration for the live run into
// dir: the hub items of the replay, acquisition of dir/auth.log, a LAPI on
// the namespace's loopback with its SQLite database in dir, the stock ban
// profile, no online API, console or metrics.
func crowdsecLiveConfig(dir string) (string, error) {
	etc := filepath.Join(dir, "etc")
	if err := linkCrowdsecHub(etc); err != nil {
		return "", err
	}
	files := map[string]string{
		"auth.log":                   "",
		"etc/simulation.yaml":        "simulation: false\n",
		"etc/console.yaml":           "share_manual_decisions: false\nshare_custom: false\nshare_tainted: false\n",
		"etc/acquis.yaml":            "filenames: [" + filepath.Join(dir, "auth.log") + "]\nlabels: {type: syslog}\n",
		"etc/profiles.yaml":          "name: default_ip_remediation\nfilters:\n  - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n  - type: ban\n    duration: 4h\non_success: break\n",
		"local_api_credentials.yaml": "",
		"config.yaml": fmt.Sprintf(`common:
  daemonize: false
  log_media: stdout
  log_level: warning
  working_dir: .
config_paths:
  config_dir: %[1]s/etc/
  data_dir: %[1]s/etc/data/
  simulation_path: %[1]s/etc/simulation.yaml
  hub_dir: %[2]s/
  index_path: %[2]s/.index.json
crowdsec_service:
  acquisition_path: %[1]s/etc/acquis.yaml
  parser_routines: 1
cscli:
  output: human
  color: "no"
db_config:
  log_level: warning
  type: sqlite
  db_path: %[1]s/crowdsec.db
api:
  client:
    credentials_path: %[1]s/local_api_credentials.yaml
  server:
    log_level: warning
    listen_uri: %[3]s
    profiles_path: %[1]s/etc/profiles.yaml
    console_path: %[1]s/etc/console.yaml
    trusted_ips: [127.0.0.1]
prometheus:
  enabled: false
`, dir, crowdsecHub, csLiveListen),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "config.yaml"), nil
}

// startInNS starts a command inside ns in a process group of its own,
// killed with the suite.
func startInNS(ns *netNS, out *syncBuffer, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

// stopGroup kills a command started by startInNS, with its children.
func stopGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

// waitUntil polls cond every 5 ms until it holds, ctx ends or d passes.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// setWatch records when each address first appears in the bouncer's set,
// from `nft monitor` in the namespace.
type setWatch struct {
	mu sync.Mutex
	at map[netip.Addr]time.Time
}

// elemLine is an element added to the bouncer's set as nft monitor prints
// it: "add element ip TABLE SET { 198.19.1.1 timeout ... }".
var elemLine = regexp.MustCompile(`^add element ip ` + csLiveTable + ` ` + csLiveSet + ` \{ (.*)\}`)

func (s *setWatch) start(ns *netNS) (*exec.Cmd, error) {
	cmd := exec.Command("ip", "netns", "exec", ns.name, "nft", "monitor", "elements")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			now := time.Now()
			m := elemLine.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			s.mu.Lock()
			for _, f := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ',' || r == ' ' }) {
				if a, err := netip.ParseAddr(f); err == nil {
					if _, ok := s.at[a]; !ok {
						s.at[a] = now
					}
				}
			}
			s.mu.Unlock()
		}
	}()
	return cmd, nil
}

func (s *setWatch) get(a netip.Addr) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.at[a]
	return t, ok
}
