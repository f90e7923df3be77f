package parse

import (
	"github.com/moatsec/moat/detect/exprenv"
)

// nodeSpec is a parser node as hub YAML spells it.
type nodeSpec struct {
	FormatVersion string             `yaml:"format"`
	Author        string             `yaml:"author"`
	Description   string             `yaml:"description"`
	Debug         bool               `yaml:"debug"`
	Profiling     bool               `yaml:"profiling"`
	Name          string             `yaml:"name"`
	Filter        string             `yaml:"filter"`
	OnSuccess     string             `yaml:"onsuccess"`
	PatternSyntax map[string]string  `yaml:"pattern_syntax"`
	Grok          grokSpec           `yaml:"grok"`
	Statics       []staticSpec       `yaml:"statics"`
	Nodes         []nodeSpec         `yaml:"nodes"`
	Whitelist     whitelistSpec      `yaml:"whitelist"`
	Stash         []stashSpec        `yaml:"stash"`
	Data          []exprenv.DataSpec `yaml:"data"`
	// Free-form metadata some hub files carry.
	Labels     map[string]any `yaml:"labels"`
	References []string       `yaml:"references"`
	Version    string         `yaml:"version"`
}

type grokSpec struct {
	Pattern    string       `yaml:"pattern"`
	Name       string       `yaml:"name"`
	ApplyOn    string       `yaml:"apply_on"`
	Expression string       `yaml:"expression"`
	Statics    []staticSpec `yaml:"statics"`
}

type staticSpec struct {
	Parsed     string `yaml:"parsed"`
	Meta       string `yaml:"meta"`
	Enriched   string `yaml:"enriched"`
	Target     string `yaml:"target"`
	Value      string `yaml:"value"`
	Expression string `yaml:"expression"`
	Method     string `yaml:"method"`
}

type whitelistSpec struct {
	Reason     string   `yaml:"reason"`
	IPs        []string `yaml:"ip"`
	CIDRs      []string `yaml:"cidr"`
	Expression []string `yaml:"expression"`
}

type stashSpec struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Value    string `yaml:"value"`
	TTL      string `yaml:"ttl"`
	Size     int    `yaml:"size"`
	Strategy string `yaml:"strategy"`
}
