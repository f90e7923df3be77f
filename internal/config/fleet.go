package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/yamlerr"
)

// Fleet is the fleet agent role: this host pushes its alerts to a fleet
// server and enforces every fleet decision, streamed from it. Off while
// Server is empty.
type Fleet struct {
	// Server is the fleet server's base URL (https://fleet.example:8089).
	Server string `yaml:"server"`
	// Servers lists replicas of one fleet server (daemons sharing one
	// PostgreSQL store, so one decision sequence): the agent streams from
	// one and moves to the next when it fails. Server is the one-item
	// form; set one of the two.
	Servers []string `yaml:"servers"`
	// MachineID and Password (or PasswordFile, holding it) log this host
	// in; the server's admin creates them with moat machines add.
	MachineID    string `yaml:"machine_id"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// BouncerKeyFile holds a bouncer key of the server, used only when
	// the server has no fleet stream (a CrowdSec LAPI): its bouncer stream
	// is then polled every PollInterval.
	BouncerKeyFile string `yaml:"bouncer_key_file"`
	// CAFile is the PEM certificate that signed the server's ("": the
	// system roots); InsecureSkipVerify skips the check (tests only).
	CAFile             string `yaml:"ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// PushBatch is the most alerts a push carries; PushInterval how long
	// a push waits for more after the first (0: it leaves at once).
	PushBatch    int           `yaml:"push_batch"`
	PushInterval time.Duration `yaml:"push_interval"`
	PollInterval time.Duration `yaml:"poll_interval"`
}

// Enabled reports whether the fleet agent role is on.
func (f Fleet) Enabled() bool { return f.Server != "" || len(f.Servers) > 0 }

// URLs returns the servers' base URLs, in the order tried: Servers, or
// Server alone.
func (f Fleet) URLs() []string {
	if len(f.Servers) > 0 {
		return f.Servers
	}
	if f.Server != "" {
		return []string{f.Server}
	}
	return nil
}

func defaultFleet() Fleet {
	return Fleet{PushBatch: 100, PollInterval: 10 * time.Second}
}

// validateFleet checks the fleet section. Plain HTTP is accepted to a
// loopback server only: the password and the token would cross the
// network in clear.
func (c *Config) validateFleet(bad func(msg string, keys ...any) error) error {
	f := c.Fleet
	if f.PushBatch < 1 || f.PushBatch > 1000 {
		return bad(fmt.Sprintf("push_batch %d: want 1 to 1000", f.PushBatch), "fleet", "push_batch")
	}
	if f.PushInterval < 0 || f.PushInterval > time.Minute {
		return bad(fmt.Sprintf("push_interval %s: want 0 to 1m", f.PushInterval), "fleet", "push_interval")
	}
	if f.PollInterval < time.Second || f.PollInterval > time.Hour {
		return bad(fmt.Sprintf("poll_interval %s: want 1s to 1h", f.PollInterval), "fleet", "poll_interval")
	}
	if !f.Enabled() {
		for _, k := range []struct {
			set bool
			key string
		}{{f.MachineID != "", "machine_id"}, {f.Password != "" || f.PasswordFile != "", "password"}, {f.BouncerKeyFile != "", "bouncer_key_file"}} {
			if k.set {
				return bad(fmt.Sprintf("%s is set but fleet.server is empty: set the server's URL, or remove the fleet section", k.key), "fleet", k.key)
			}
		}
		return nil
	}
	if f.Server != "" && len(f.Servers) > 0 {
		return bad("server and servers are both set: list every replica under servers", "fleet", "server")
	}
	if len(f.Servers) > 16 {
		return bad(fmt.Sprintf("servers: %d replicas, want at most 16", len(f.Servers)), "fleet", "servers")
	}
	if f.Server != "" {
		if msg := checkServerURL(f.Server); msg != "" {
			return bad("server "+msg, "fleet", "server")
		}
	}
	seen := map[string]int{}
	for i, s := range f.Servers {
		if msg := checkServerURL(s); msg != "" {
			return bad(fmt.Sprintf("servers[%d] %s", i, msg), "fleet", "servers", i)
		}
		// The same replica twice would make a failover a reconnect to
		// the server that just failed.
		k := strings.TrimRight(s, "/")
		if j, dup := seen[k]; dup {
			return bad(fmt.Sprintf("servers[%d] %s: the same as servers[%d]", i, yamlerr.Excerpt(s), j), "fleet", "servers", i)
		}
		seen[k] = i
	}
	if f.MachineID == "" || len(f.MachineID) > 128 {
		return bad("machine_id: want the id the server's admin created (moat machines add), 1 to 128 characters", "fleet", "machine_id")
	}
	if (f.Password == "") == (f.PasswordFile == "") {
		return bad("want one of password and password_file", "fleet", "password")
	}
	if len(f.Password) > 72 {
		return bad("password longer than 72 bytes", "fleet", "password")
	}
	if c.Server.Enabled {
		return bad("fleet and server are both on: a fleet server enforces its own decisions; a host is one or the other", "fleet", "server")
	}
	return nil
}

// checkServerURL returns what is wrong with a server's URL ("": nothing).
func checkServerURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Sprintf("%s: want http(s)://host:port", yamlerr.Excerpt(s))
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return fmt.Sprintf("%s: plain http off loopback: use https, or the machine password and tokens cross the network in clear", yamlerr.Excerpt(s))
	}
	return ""
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	// A name other than localhost is not resolved here: what it resolves
	// to may change, so it is taken as off loopback.
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}
