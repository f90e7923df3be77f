package parse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moatsec/moat/detect/grok"
)

// groksOf collects the groks of nodes and their children.
func groksOf(ns []*node, out []*grok.Pattern) []*grok.Pattern {
	for _, n := range ns {
		if n.grok != nil {
			out = append(out, n.grok)
		}
		out = groksOf(n.children, out)
	}
	return out
}

// The hub patterns that every syslog, nginx and web line goes through keep
// their hand-written matcher when loaded from the hub as it is: a hub
// update that respells them, or a change to how moat expands them, would
// otherwise silently cost several times the CPU per line.
func TestHubHotPatternsKeepFastTier(t *testing.T) {
	shared := sharedHub(t)
	// Debian's crowdsec package ships an earlier nginx-logs, whose access
	// line pattern differs (NGUSER, no port): it has a fast path too.
	debian := hubRoot{"debian", "/usr/share/crowdsec/hub", "/etc/crowdsec/patterns", "/usr/share/crowdsec/data"}
	sharedRoot := hubRoot{"shared", filepath.Join(shared, "hub"), filepath.Join(shared, "patterns"), filepath.Join(shared, "data")}
	tests := []struct {
		root hubRoot
		file string
		fast []string // prefixes of the patterns that must be served by grok.Fast
	}{
		{sharedRoot, "s00-raw/crowdsecurity/syslog-logs.yaml", []string{"^%{SYSLOGLINE}"}},
		{sharedRoot, "s01-parse/crowdsecurity/nginx-logs.yaml", []string{`(%{IPORHOST:target_fqdn}(:%{INT:port})? )?%{IPORHOST:remote_addr} - (%{NGCUSTOMUSER:remote_user} )?\[%{HTTPDATE:time_local}\] "%{WORD:verb} `}},
		{sharedRoot, "s02-enrich/crowdsecurity/http-logs.yaml", []string{`^%{GREEDYDATA:request}\?%{GREEDYDATA:http_args}$`, `%{DIR:file_dir}(%{FILE:file_frag}%{EXT:file_ext})?`}},
		{debian, "s00-raw/crowdsecurity/syslog-logs.yaml", []string{"^%{SYSLOGLINE}"}},
		{debian, "s01-parse/crowdsecurity/nginx-logs.yaml", []string{`(%{IPORHOST:target_fqdn} )?%{IPORHOST:remote_addr} - (%{NGUSER:remote_user})? \[%{HTTPDATE:time_local}\] "%{WORD:verb} `}},
		{debian, "s02-enrich/crowdsecurity/http-logs.yaml", []string{`^%{GREEDYDATA:request}\?%{GREEDYDATA:http_args}$`, `%{DIR:file_dir}(%{FILE:file_frag}%{EXT:file_ext})?`}},
	}
	for _, tt := range tests {
		t.Run(tt.root.name+"/"+filepath.Base(tt.file), func(t *testing.T) {
			if _, err := os.Stat(tt.root.hub); err != nil {
				t.Skipf("SKIP: %s is missing (Debian's crowdsec package installs it): %v", tt.root.hub, err)
			}
			p, err := Load([]File{{Path: filepath.Join(tt.root.hub, "parsers", tt.file), Stage: strings.Split(tt.file, "/")[0]}},
				Options{PatternDir: tt.root.patterns, DataDir: tt.root.data})
			if err != nil {
				t.Fatal(err)
			}
			var gs []*grok.Pattern
			for _, ns := range p.nodes {
				gs = groksOf(ns, gs)
			}
			fast := 0
			for _, g := range gs {
				if g.Tier() == grok.Fast {
					fast++
				}
			}
			for _, want := range tt.fast {
				found := false
				for _, g := range gs {
					if strings.HasPrefix(g.String(), want) {
						found = true
						if g.Tier() != grok.Fast {
							t.Errorf("%s: served first by %s, want %s (tiers %v)", g, g.Tier(), grok.Fast, g.Tiers())
						}
					}
				}
				if !found {
					t.Errorf("no grok %s... in %s", want, tt.file)
				}
			}
			if fast != len(tt.fast) {
				t.Errorf("%d groks served by %s, want %d", fast, grok.Fast, len(tt.fast))
			}
			if got := p.GrokPatterns()[grok.Fast]; got != fast {
				t.Errorf("GrokPatterns counts %d %s patterns, the nodes hold %d", got, grok.Fast, fast)
			}
		})
	}
}

// hubRoot locates a hub snapshot's items, patterns and data.
type hubRoot struct{ name, hub, patterns, data string }
