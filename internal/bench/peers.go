package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// PeerRatio compares a peer with moat on the same corpus in the same
// repetitions: Speed is moat's lines/s over the peer's, CPU and RSS the
// peer's cost over moat's (so above 1 means moat is ahead on every one).
type PeerRatio struct {
	Peer  string  `json:"peer"`
	Log   string  `json:"log"`
	Lines int     `json:"lines"`
	Speed float64 `json:"speed_ratio"`
	CPU   float64 `json:"cpu_ratio"`
	RSS   float64 `json:"rss_ratio"`
}

// peerPackages are the peers looked for; only CrowdSec has a harness.
var peerPackages = []string{"crowdsec", "fail2ban", "sshguard"}

// installed reports whether dpkg knows pkg as installed (or installed but
// not configured: Debian's crowdsec stays half-configured on a host that
// cannot reach its central API, and its binary works).
func installed(pkg string) (bool, string) {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkg).Output()
	if err != nil {
		return false, "not installed"
	}
	st := strings.TrimSpace(string(out))
	return strings.HasSuffix(st, " installed") || strings.HasSuffix(st, " half-configured"), st
}

// runPeers replays the peer corpus with every installed peer and with moat,
// interleaved, inside a network namespace of the suite's own.
func runPeers(ctx context.Context, o *Options, res *Result) error {
	var cs bool
	for _, p := range peerPackages {
		ok, st := installed(p)
		switch {
		case !ok:
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s: SKIPPED, not installed (dpkg: %s); the suite never installs a peer", p, st))
		case p == "crowdsec":
			if _, err := exec.LookPath("crowdsec"); err != nil {
				res.Skipped = append(res.Skipped, "crowdsec: SKIPPED, the package is there but the crowdsec binary is not on PATH")
				continue
			}
			cs = true
		default:
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s: SKIPPED, installed but the suite has no replay harness for it yet", p))
		}
	}
	for _, s := range res.Skipped {
		logf(o.Log, "%s", s)
	}
	if !cs {
		return nil
	}
	c, err := genCorpus(ctx, o, o.PeerSSHLines, o.PeerNginxLines)
	if errors.Is(err, errNoCorpus) {
		res.Skipped = append(res.Skipped, "peers: SKIPPED, "+err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	ns, err := newNetNS(ctx, "mb-p")
	if err != nil {
		return err
	}
	defer ns.del()
	lapi, err := startStubLAPI(ns)
	if err != nil {
		return err
	}
	defer lapi.close()
	cfg, err := crowdsecConfig(o.WorkDir, lapi.url)
	if err != nil {
		return err
	}
	logs := []string{"auth.log", "access.log"}
	moatS, csS := map[string][]sample{}, map[string][]sample{}
	for rep := range o.Reps {
		for _, log := range logs {
			logf(o.Log, "peers: %s (%d lines), moat then crowdsec, run %d/%d", log, c.lines[log], rep+1, o.Reps)
			s, err := moatReplay(ctx, o, c, log, 2)
			if err != nil {
				return err
			}
			moatS[log] = append(moatS[log], s)
			lapi.reset()
			// nsenter execs crowdsec in its own place, so the measured
			// process is crowdsec itself.
			cmd := exec.CommandContext(ctx, "nsenter", "--net="+ns.path(), "crowdsec", "-c", cfg, "-dsn", "file://"+filepath.Join(c.dir, log), "-type", logType[log], "-no-api")
			u, err := runMeasured(cmd, nil)
			if err != nil {
				return fmt.Errorf("crowdsec: %w", err)
			}
			csS[log] = append(csS[log], sample{u: u, detected: lapi.sources()})
		}
	}
	for _, log := range logs {
		m := summarise("moat", log, "peer", c, 2, moatS[log])
		p := summarise("crowdsec", log, "peer", c, 0, csS[log])
		res.Throughput = append(res.Throughput, m, p)
		res.Peers = append(res.Peers, PeerRatio{
			Peer: "crowdsec", Log: log, Lines: c.lines[log],
			Speed: m.LinesPerSec.Median / p.LinesPerSec.Median,
			CPU:   p.CPUSec.Median / m.CPUSec.Median,
			RSS:   p.RSSMiB.Median / m.RSSMiB.Median,
		})
	}
	return nil
}

// crowdsecHub is where Debian installs its hub snapshot.
const crowdsecHub = "/usr/share/crowdsec/hub"

// linkCrowdsecHub fills CrowdSec's config directory dir with the parsers
// and scenarios of Debian's hub snapshot that the sshd and nginx
// collections (with base-http-scenarios) install, their data files and
// the patterns, as symlinks into /usr/share/crowdsec and /etc/crowdsec.
func linkCrowdsecHub(dir string) error {
	const hub = crowdsecHub
	items := map[string][]string{
		"parsers/s00-raw":    {"crowdsecurity/syslog-logs"},
		"parsers/s01-parse":  {"crowdsecurity/sshd-logs", "crowdsecurity/nginx-logs"},
		"parsers/s02-enrich": {"crowdsecurity/dateparse-enrich", "crowdsecurity/http-logs"},
		"scenarios": {"crowdsecurity/ssh-bf", "crowdsecurity/ssh-slow-bf", "crowdsecurity/nginx-req-limit-exceeded",
			"crowdsecurity/http-crawl-non_statics", "crowdsecurity/http-probing", "crowdsecurity/http-bad-user-agent",
			"crowdsecurity/http-path-traversal-probing", "crowdsecurity/http-sensitive-files", "crowdsecurity/http-sqli-probing",
			"crowdsecurity/http-xss-probing", "crowdsecurity/http-backdoors-attempts", "ltsich/http-w00tw00t",
			"crowdsecurity/http-generic-bf", "crowdsecurity/http-open-proxy"},
	}
	for sub, names := range items {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
		src := filepath.Join(hub, sub)
		if strings.HasPrefix(sub, "parsers/") {
			src = filepath.Join(hub, "parsers", filepath.Base(sub))
		}
		for _, n := range names {
			f := filepath.Join(src, n+".yaml")
			if _, err := os.Stat(f); err != nil {
				continue // not in this snapshot
			}
			if err := os.Symlink(f, filepath.Join(dir, sub, filepath.Base(n)+".yaml")); err != nil {
				return err
			}
		}
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	files, _ := filepath.Glob("/usr/share/crowdsec/data/*")
	for _, f := range files {
		if err := os.Symlink(f, filepath.Join(data, filepath.Base(f))); err != nil {
			return err
		}
	}
	return os.Symlink("/etc/crowdsec/patterns", filepath.Join(dir, "patterns"))
}

// crowdsecConfig writes a CrowdSec configuration that loads the parsers
// and scenarios of Debian's hub snapshot (see linkCrowdsecHub) and pushes
// its alerts to the stub LAPI.
func crowdsecConfig(work, lapiURL string) (string, error) {
	const hub = crowdsecHub
	dir := filepath.Join(work, "crowdsec")
	if err := linkCrowdsecHub(dir); err != nil {
		return "", err
	}
	write := func(name, text string) error { return os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644) }
	if err := write("simulation.yaml", "simulation: false\n"); err != nil {
		return "", err
	}
	if err := write("acquis.yaml", ""); err != nil {
		return "", err
	}
	if err := write("local_api_credentials.yaml", "url: "+lapiURL+"\nlogin: moat-bench\npassword: moat-bench\n"); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`common:
  daemonize: false
  log_media: stdout
  log_level: warning
  working_dir: .
config_paths:
  config_dir: %[1]s/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/simulation.yaml
  hub_dir: %[2]s/
  index_path: %[2]s/.index.json
crowdsec_service:
  acquisition_path: %[1]s/acquis.yaml
  parser_routines: 1
db_config:
  type: sqlite
  db_path: %[1]s/data/crowdsec.db
prometheus:
  enabled: false
api:
  client:
    credentials_path: %[1]s/local_api_credentials.yaml
`, dir, hub)
	return filepath.Join(dir, "config.yaml"), write("config.yaml", cfg)
}

// stubLAPI answers CrowdSec's agent as its local API would, enough for it
// to log in and push alerts, and keeps the sources those alerts name.
type stubLAPI struct {
	url string
	srv *http.Server
	mu  sync.Mutex
	got map[string]bool
}

func startStubLAPI(ns *netNS) (*stubLAPI, error) {
	var ln net.Listener
	if err := ns.do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		return nil, err
	}
	s := &stubLAPI{url: "http://" + ln.Addr().String() + "/", got: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/watchers/login", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"code":200,"expire":"2099-01-01T00:00:00Z","token":"moat-bench"}`)
	})
	mux.HandleFunc("/v1/alerts", func(w http.ResponseWriter, r *http.Request) {
		var alerts []struct {
			Source struct {
				Value string `json:"value"`
			} `json:"source"`
		}
		if r.Method == http.MethodPost {
			_ = json.NewDecoder(r.Body).Decode(&alerts)
		}
		ids := make([]string, len(alerts))
		s.mu.Lock()
		for i, a := range alerts {
			s.got[a.Source.Value] = true
			ids[i] = fmt.Sprint(i + 1)
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(ids)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "{}")
	})
	s.srv = &http.Server{Handler: mux}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *stubLAPI) reset() {
	s.mu.Lock()
	s.got = map[string]bool{}
	s.mu.Unlock()
}

func (s *stubLAPI) sources() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

func (s *stubLAPI) close() { s.srv.Close() }
