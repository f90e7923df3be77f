// Package config loads /etc/moat/moat.yaml strictly: defaults first, then the
// file decoded with unknown keys rejected, then validation. Every error names
// the file and line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/yamlerr"
)

// DefaultPath is where moat looks for its configuration.
const DefaultPath = "/etc/moat/moat.yaml"

// Config is moat's configuration. Every key is optional; Default fills the rest.
type Config struct {
	StateDir    string      `yaml:"state_dir"`
	LogLevel    string      `yaml:"log_level"`
	API         API         `yaml:"api"`
	Metrics     Metrics     `yaml:"metrics"`
	Hub         Hub         `yaml:"hub"`
	Acquisition Acquisition `yaml:"acquisition"`
	Profiles    string      `yaml:"profiles"`
	Enforce     Enforce     `yaml:"enforce"`
	// Allowlist holds addresses, ranges and hostnames never banned.
	Allowlist AllowlistValues `yaml:"allowlist"`
	// AllowlistFiles are include files (globs) of allowlist entries, one a
	// line, reread when they change; AllowlistOptions tunes the entries
	// that change at run time (allowlist.go).
	AllowlistFiles   []string         `yaml:"allowlist_files"`
	AllowlistOptions AllowlistOptions `yaml:"allowlist_options"`
	// AllowlistAllowWide accepts allowlist entries wider than the ban
	// limits (/8, /32), which lift and prevent every ban inside them.
	AllowlistAllowWide bool `yaml:"allowlist_allow_wide"`
	// Simulation lists scenarios whose alerts produce simulated decisions,
	// stored and shown but never enforced.
	Simulation []string  `yaml:"simulation"`
	Store      StoreConf `yaml:"store"`
	// Server is the fleet server role (off by default).
	Server Server `yaml:"server"`
	// Community is the opt-in community exchange (off by default).
	Community Community `yaml:"community"`
	// Fleet is the fleet agent role (off by default).
	Fleet Fleet `yaml:"fleet"`
	// Notifications are named channels (webhook, email, file) that
	// profiles send their alerts to by name (notifications.go).
	Notifications map[string]Notification `yaml:"notifications,omitempty"`
	// Feeds are list feeds pulled into decisions of origin list (feeds.go).
	Feeds []Feed `yaml:"feeds,omitempty"`
	// Actions are named commands run on bans and unbans (actions.go).
	Actions map[string]Action `yaml:"actions,omitempty"`
	// Scenarios tune hub scenarios by name or glob (scenarios.go).
	Scenarios []ScenarioOverride `yaml:"scenarios"`
	// HTTP tunes how HTTP access logs are read: the reverse proxies whose
	// forwarded-client header names the client (http.go).
	HTTP HTTP `yaml:"http"`
	// GeoIP names the MaxMind-format databases moat reads (geoip.go);
	// off by default, never downloaded.
	GeoIP GeoIP `yaml:"geoip"`

	// Source is the file the config came from, or "" for the embedded default.
	Source string `yaml:"-"`
	// root is the parsed file, for the lines of errors found after Parse.
	root *yaml.Node
}

type API struct {
	Socket string `yaml:"socket"`
	Listen string `yaml:"listen"`
}

type Metrics struct {
	Listen string `yaml:"listen"`
}

type Hub struct {
	Dir      string   `yaml:"dir"`
	Patterns string   `yaml:"patterns"`
	Data     string   `yaml:"data"`
	Items    []string `yaml:"items"`
	// MaxBuckets bounds live scenario buckets so a flood of distinct
	// sources cannot exhaust memory.
	MaxBuckets int `yaml:"max_buckets"`
	// Workers is how many goroutines parse lines, live and in a replay;
	// 0 is one per core. Buckets still see the lines in order, so the
	// alerts do not depend on it.
	Workers int `yaml:"workers"`
}

type Acquisition struct {
	// Dir holds acquisition files in the CrowdSec acquis.yaml shape.
	Dir string `yaml:"dir"`
}

type Enforce struct {
	// BatchWindow is how long the reconciler gathers decisions before it
	// writes one kernel transaction; BatchMax ends a batch early.
	BatchWindow time.Duration `yaml:"batch_window"`
	BatchMax    int           `yaml:"batch_max"`
	// VerifyInterval is how often the kernel is compared with the store
	// and drift repaired; 0 turns that off (the kernel is then written
	// only from decisions), negative is an error.
	VerifyInterval time.Duration `yaml:"verify_interval"`
	// IPv6BanPrefix widens a ban on a single IPv6 address to its covering
	// prefix (64 bans the whole /64); 128 bans the address alone.
	IPv6BanPrefix int `yaml:"ipv6_ban_prefix"`
	// MinRangeBits4/6 refuse ranges wider than /N, so a typo cannot ban a
	// continent.
	MinRangeBits4 int     `yaml:"min_range_bits_v4"`
	MinRangeBits6 int     `yaml:"min_range_bits_v6"`
	NFTables      NFT     `yaml:"nftables"`
	XDP           XDPConf `yaml:"xdp"`
	// NeverBlock are destination ports ("22/tcp", "53/udp", "443" for
	// both) that moat's kernel rules leave open to everyone, banned or not.
	NeverBlock []string `yaml:"never_block"`
}

type NFT struct {
	Enabled  bool   `yaml:"enabled"`
	Hook     string `yaml:"hook"`
	Priority int    `yaml:"priority"`
	// Interfaces get an extra netdev ingress chain each.
	Interfaces []string `yaml:"interfaces"`
}

// StoreConf bounds the store file: alerts and ended decisions older than
// AlertRetention are pruned (hourly), and past MaxAlerts (0: no cap) the
// oldest alerts go first. Escalation looks back no further than retention.
type StoreConf struct {
	AlertRetention time.Duration `yaml:"alert_retention"`
	MaxAlerts      int           `yaml:"max_alerts"`
	// DSN, when set, keeps the store in PostgreSQL (postgres://...), as
	// fleet server replicas sharing one database do; "" is the embedded
	// SQLite file in state_dir.
	DSN string `yaml:"dsn"`
}

// MarshalYAML shows the DSN without its password: moat config check
// prints the effective configuration to a terminal or a ticket.
func (s StoreConf) MarshalYAML() (any, error) {
	type plain StoreConf
	if u, err := url.Parse(s.DSN); err == nil && u.User != nil {
		s.DSN = u.Redacted()
	}
	return plain(s), nil
}

// Server is the fleet server role: CrowdSec agents ("machines") register,
// log in and push alerts to the CrowdSec LAPI machine endpoints, served
// beside the bouncer endpoints.
type Server struct {
	Enabled bool `yaml:"enabled"`
	// Listen is where the machine and bouncer endpoints are served; ""
	// serves the machine endpoints on api.listen, beside the bouncer ones.
	Listen string `yaml:"listen"`
	// JWTLifetime is how long a login token is valid (0: 2h, CrowdSec's).
	JWTLifetime time.Duration `yaml:"jwt_lifetime"`
	// EnrolmentTokenFile holds a token that approves the machines
	// presenting it at registration; without it every machine waits for
	// moat machines approve.
	EnrolmentTokenFile string    `yaml:"enrolment_token_file"`
	TLS                ServerTLS `yaml:"tls"`
}

// ServerTLS serves server.listen over TLS; with ClientCA, clients must
// present a certificate it signed (mutual TLS).
type ServerTLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

type XDPConf struct {
	Enabled    bool     `yaml:"enabled"`
	Interfaces []string `yaml:"interfaces"`
	PinDir     string   `yaml:"pin_dir"`
	MaxSingles int      `yaml:"max_singles"`
	MaxRanges  int      `yaml:"max_ranges"`
}

// Default returns the built-in configuration, the one moat runs with when
// no file exists.
func Default() Config {
	return Config{
		StateDir: "/var/lib/moat",
		LogLevel: "info",
		API:      API{Socket: "/run/moat/moat.sock", Listen: "127.0.0.1:8088"},
		Metrics:  Metrics{Listen: "127.0.0.1:9641"},
		Hub: Hub{
			Dir:        "/etc/moat/hub",
			Patterns:   "/etc/moat/patterns",
			Data:       "/var/lib/moat/data",
			MaxBuckets: 100000,
		},
		Acquisition: Acquisition{Dir: "/etc/moat/acquis.d"},
		Profiles:    "/etc/moat/profiles.yaml",
		Enforce: Enforce{
			BatchWindow:    0,
			BatchMax:       4096,
			VerifyInterval: time.Minute,
			IPv6BanPrefix:  128,
			MinRangeBits4:  8,
			MinRangeBits6:  32,
			NFTables:       NFT{Enabled: true, Hook: "prerouting", Priority: -300},
			XDP:            XDPConf{PinDir: "/sys/fs/bpf/moat", MaxSingles: 1 << 20, MaxRanges: 1 << 16},
		},
		Store:     StoreConf{AlertRetention: 30 * 24 * time.Hour, MaxAlerts: 200_000},
		Fleet:     defaultFleet(),
		Community: defaultCommunity(),
		// Login sessions are protected unless turned off.
		AllowlistOptions: defaultAllowlistOptions(),
		HTTP:             HTTP{ClientIPHeader: DefaultClientIPHeader},
	}
}

// Error is a configuration error at a place in a file.
type Error = yamlerr.Error

// ErrNotExist is returned (wrapped) by Load when the file does not exist.
var ErrNotExist = errors.New("config file does not exist")

// Load reads path. A missing file yields an error wrapping ErrNotExist so the
// caller can decide to use Default.
func Load(path string) (Config, error) {
	data, err := yamlerr.ReadFile(path, MaxFileSize)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, &Error{File: path, Msg: "no such file", Err: ErrNotExist}
	}
	var ye *Error
	if errors.As(err, &ye) {
		return Config{}, err
	}
	if err != nil {
		return Config{}, &Error{File: path, Msg: err.Error(), Err: err}
	}
	return Parse(path, data)
}

// MaxFileSize is the largest configuration file Load reads.
const MaxFileSize = yamlerr.MaxConfigFile

// Parse decodes data (named path in errors) over the defaults and validates it.
func Parse(path string, data []byte) (Config, error) {
	cfg := Default()
	cfg.Source = path
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, yamlerr.Wrap(path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, yamlerr.Wrap(path, err)
	}
	if len(data) > MaxFileSize {
		return Config{}, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	if err := cfg.validate(&root); err != nil {
		return Config{}, err
	}
	cfg.root = &root
	return cfg, nil
}

// CheckPaths checks that the content directories the file names exist.
// Each has a fallback (the packaged copy, then the built-in one) for a
// fresh install where the default place is empty; a path set to anything
// else is what the operator meant, and a typo in it must not quietly load
// other content. The GeoIP databases, which have no fallback, must be
// readable files.
func (c *Config) CheckPaths() error {
	if err := c.checkGeoIP(); err != nil {
		return err
	}
	def := Default()
	for _, p := range []struct {
		v, def string
		key    []any
	}{
		{c.Hub.Dir, def.Hub.Dir, []any{"hub", "dir"}},
		{c.Hub.Patterns, def.Hub.Patterns, []any{"hub", "patterns"}},
		{c.Acquisition.Dir, def.Acquisition.Dir, []any{"acquisition", "dir"}},
	} {
		if p.v == "" || p.v == p.def {
			continue
		}
		name := fmt.Sprintf("%s.%s", p.key[0], p.key[1])
		// Paths are quoted whole up to PATH_MAX: a longer one cannot exist.
		q := strconv.Quote(p.v)
		if len(p.v) > 4096 {
			q = yamlerr.Excerpt(p.v)
		}
		st, err := os.Stat(p.v)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return c.errAt(fmt.Sprintf("%s %s: no such directory (only the default %s falls back to the packaged content)", name, q, p.def), p.key...)
		case err != nil:
			return c.errAt(fmt.Sprintf("%s: %v", name, err), p.key...)
		case !st.IsDir():
			return c.errAt(fmt.Sprintf("%s %s: not a directory", name, q), p.key...)
		}
	}
	return nil
}

// errAt is an error at the line of keys in the file the config came from.
func (c *Config) errAt(msg string, keys ...any) error {
	line := 0
	if c.root != nil {
		line = lineOf(c.root, keys...)
	}
	file := c.Source
	if file == "" {
		file = "(built-in default)"
	}
	return &Error{File: file, Line: line, Msg: msg}
}

func (c *Config) validate(root *yaml.Node) error {
	bad := func(msg string, keys ...any) error {
		return &Error{File: c.Source, Line: lineOf(root, keys...), Msg: msg}
	}
	q := yamlerr.Excerpt
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return bad(fmt.Sprintf("log_level %s: want debug, info, warn or error", q(c.LogLevel)), "log_level")
	}
	if c.StateDir == "" {
		return bad("state_dir must not be empty", "state_dir")
	}
	for _, l := range []struct {
		v   string
		key []any
	}{{c.API.Listen, []any{"api", "listen"}}, {c.Metrics.Listen, []any{"metrics", "listen"}}} {
		if l.v == "" {
			continue
		}
		if _, err := netip.ParseAddrPort(l.v); err != nil {
			return bad(fmt.Sprintf("%s: want address:port%s", short(l.v), detail(l.v, err)), l.key...)
		}
	}
	if err := c.validateAllowlist(root, bad); err != nil {
		return err
	}
	e := c.Enforce
	switch e.NFTables.Hook {
	case "prerouting", "input":
	default:
		return bad(fmt.Sprintf("nftables hook %s: want prerouting or input", q(e.NFTables.Hook)), "enforce", "nftables", "hook")
	}
	if e.BatchWindow < 0 || e.BatchWindow > time.Second {
		return bad("batch_window must be between 0 and 1s", "enforce", "batch_window")
	}
	if r := c.Store.AlertRetention; r < time.Hour {
		return bad(fmt.Sprintf("alert_retention %s: want at least 1h", r), "store", "alert_retention")
	}
	if c.Store.MaxAlerts < 0 {
		return bad(fmt.Sprintf("max_alerts %d: want 0 (no cap) or more", c.Store.MaxAlerts), "store", "max_alerts")
	}
	if e.VerifyInterval < 0 || e.VerifyInterval > 0 && e.VerifyInterval < time.Second {
		return bad(fmt.Sprintf("verify_interval %s: want 0 (no drift repair) or at least 1s", e.VerifyInterval), "enforce", "verify_interval")
	}
	if e.BatchMax < 1 {
		return bad("batch_max must be at least 1", "enforce", "batch_max")
	}
	if e.IPv6BanPrefix < 1 || e.IPv6BanPrefix > 128 {
		return bad("ipv6_ban_prefix must be between 1 and 128", "enforce", "ipv6_ban_prefix")
	}
	if e.MinRangeBits4 < 0 || e.MinRangeBits4 > 32 {
		return bad("min_range_bits_v4 must be between 0 and 32", "enforce", "min_range_bits_v4")
	}
	if e.MinRangeBits6 < 0 || e.MinRangeBits6 > 128 {
		return bad("min_range_bits_v6 must be between 0 and 128", "enforce", "min_range_bits_v6")
	}
	if e.XDP.Enabled && len(e.XDP.Interfaces) == 0 {
		return bad("xdp is enabled but lists no interfaces", "enforce", "xdp", "interfaces")
	}
	if e.XDP.MaxSingles < 1 || e.XDP.MaxRanges < 1 {
		return bad("xdp max_singles and max_ranges must be positive", "enforce", "xdp")
	}
	if c.Hub.MaxBuckets < 1 {
		return bad("hub max_buckets must be positive", "hub", "max_buckets")
	}
	if d := c.Store.DSN; d != "" && !strings.HasPrefix(d, "postgres://") && !strings.HasPrefix(d, "postgresql://") {
		return bad("store dsn must be a postgres:// URL (or empty for the SQLite file in state_dir)", "store", "dsn")
	}
	if c.Hub.Workers < 0 {
		return bad("hub workers must be 0 (one per core) or positive", "hub", "workers")
	}
	if err := c.validateNotifications(root, bad); err != nil {
		return err
	}
	if err := c.validateActions(bad); err != nil {
		return err
	}
	if err := c.validateServer(bad); err != nil {
		return err
	}
	if err := c.validateNeverBlock(bad); err != nil {
		return err
	}
	if err := c.validateCommunity(bad); err != nil {
		return err
	}
	if err := c.validateScenarios(bad); err != nil {
		return err
	}
	if err := c.validateFeeds(bad); err != nil {
		return err
	}
	if err := c.validateHTTP(bad); err != nil {
		return err
	}
	if err := c.validateGeoIP(bad); err != nil {
		return err
	}
	return c.validateFleet(bad)
}

// validateServer checks the server section. A listener off loopback must
// have TLS: machine passwords and tokens would cross the network in clear.
func (c *Config) validateServer(bad func(msg string, keys ...any) error) error {
	sv := c.Server
	if l := sv.JWTLifetime; l != 0 && (l < time.Minute || l > 30*24*time.Hour) {
		return bad(fmt.Sprintf("jwt_lifetime %s: want 0 (2h) or between 1m and 720h", l), "server", "jwt_lifetime")
	}
	if (sv.TLS.Cert == "") != (sv.TLS.Key == "") {
		return bad("tls needs both cert and key", "server", "tls")
	}
	if sv.TLS.ClientCA != "" && sv.TLS.Cert == "" {
		return bad("tls client_ca needs cert and key: mutual TLS is TLS first", "server", "tls", "client_ca")
	}
	if sv.Listen != "" {
		ap, err := netip.ParseAddrPort(sv.Listen)
		if err != nil {
			return bad(fmt.Sprintf("%s: want address:port%s", short(sv.Listen), detail(sv.Listen, err)), "server", "listen")
		}
		if sv.Listen == c.API.Listen {
			return bad(fmt.Sprintf("%s is api.listen already: leave server.listen empty to serve machines there", sv.Listen), "server", "listen")
		}
		if sv.Enabled && !ap.Addr().IsLoopback() && sv.TLS.Cert == "" {
			return bad(fmt.Sprintf("%s is not loopback: set tls cert and key, or machine passwords and tokens cross the network in clear", sv.Listen), "server", "listen")
		}
	}
	if !sv.Enabled {
		return nil
	}
	if sv.Listen == "" {
		if c.API.Listen == "" {
			return bad("server is enabled but neither server.listen nor api.listen is set", "server", "enabled")
		}
		if sv.TLS.Cert != "" {
			return bad("tls applies to server.listen, which is empty (api.listen serves plain HTTP)", "server", "tls")
		}
	}
	return nil
}

// short is v as it is when short, else an excerpt.
func short(v string) string {
	if len(v) > 64 {
		return yamlerr.Excerpt(v)
	}
	return v
}

// detail is the parser's complaint about v in parentheses, left out for a
// long v, which the parser's message would quote whole.
func detail(v string, err error) string {
	if len(v) > 64 {
		return ""
	}
	return " (" + err.Error() + ")"
}

// ParsePrefix accepts an address ("198.18.0.1") or a CIDR ("198.18.0.0/15")
// and returns it in the form the store keeps (model.ParseValue), so
// ::ffff:0.0.0.0/96 is judged as the 0.0.0.0/0 it acts as.
func ParsePrefix(s string) (netip.Prefix, error) {
	return model.ParseValue(s)
}

// Marshal renders the effective configuration as YAML.
func (c *Config) Marshal() ([]byte, error) {
	return yaml.Marshal(c)
}

// lineOf finds the line of the value at a path of mapping keys (string) and
// sequence indexes (int); it falls back to the deepest node found.
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						next = n.Content[i+1]
						line = n.Content[i].Line
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
			}
		}
		if next == nil {
			return line
		}
		n = next
		line = n.Line
	}
	return line
}
