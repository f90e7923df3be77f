package config

import (
	"fmt"
	"net/url"
	"time"
)

// Community is the opt-in community exchange. Each switch is independent
// and off by default: Enabled runs the client at all, Share sends signals
// of local bans, Pull turns the server's blocklist into decisions of
// origin community. The server and this host's credentials come from moat
// community register, stored in the state directory.
type Community struct {
	Enabled bool `yaml:"enabled"`
	Share   bool `yaml:"share"`
	Pull    bool `yaml:"pull"`
	// Proxy is an http://, https:// or socks5:// proxy to reach the
	// server through; empty uses HTTPS_PROXY from the environment.
	Proxy string `yaml:"proxy"`
	// PushInterval is how often queued signals are sent; PullInterval
	// how often the list is pulled.
	PushInterval time.Duration `yaml:"push_interval"`
	PullInterval time.Duration `yaml:"pull_interval"`
	// MaxDecisions caps the community decisions held.
	MaxDecisions int `yaml:"max_decisions"`
}

func defaultCommunity() Community {
	return Community{PushInterval: 10 * time.Second, PullInterval: time.Hour, MaxDecisions: 10000}
}

func (c *Config) validateCommunity(bad func(msg string, keys ...any) error) error {
	cm := c.Community
	if cm.Proxy != "" {
		u, err := url.Parse(cm.Proxy)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5" && u.Scheme != "socks5h") {
			return bad(fmt.Sprintf("proxy %s: want http://, https:// or socks5://host:port", short(cm.Proxy)), "community", "proxy")
		}
	}
	if cm.PushInterval < time.Second {
		return bad(fmt.Sprintf("push_interval %s: want at least 1s", cm.PushInterval), "community", "push_interval")
	}
	if cm.PullInterval < time.Minute {
		return bad(fmt.Sprintf("pull_interval %s: want at least 1m", cm.PullInterval), "community", "pull_interval")
	}
	if cm.MaxDecisions < 1 {
		return bad("max_decisions must be positive", "community", "max_decisions")
	}
	return nil
}
