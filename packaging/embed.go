// Package packaging holds what moat ships besides its binary: the default
// configuration, acquisition and profiles, and the hub content (parsers,
// scenarios, grok patterns) written for moat in the CrowdSec hub format. The
// daemon embeds them so it runs with no file installed.
package packaging

import "embed"

// DefaultConfig is /etc/moat/moat.yaml as shipped.
//
//go:embed moat.yaml
var DefaultConfig []byte

// DefaultProfiles is /etc/moat/profiles.yaml as shipped.
//
//go:embed profiles.yaml
var DefaultProfiles []byte

// Files holds hub/, patterns/ and acquis.d/ as installed under
// /usr/share/moat/.
//
//go:embed hub patterns acquis.d
var Files embed.FS
