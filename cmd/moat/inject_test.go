package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplayBansTheClientNotTheAddressInItsUserName replays sshd failures
// whose user names carry another address (" from 198.51.100.99 port 1",
// IPv6 too) through the shipped content: the clients that sent them are
// banned, the addresses they named never are.
func TestReplayBansTheClientNotTheAddressInItsUserName(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("state_dir: %s\nhub:\n  dir: %s\n  patterns: %s\n  data: %s\n",
		filepath.Join(dir, "state"), filepath.Join(root, "packaging", "hub"), filepath.Join(root, "packaging", "patterns"), filepath.Join(dir, "data"))), 0o644))

	const (
		attacker4, named4 = "198.18.90.7", "198.51.100.99"
		attacker6, named6 = "2001:db8:90::7", "2001:db8:dead::99"
	)
	var b strings.Builder
	for i := range 8 {
		for _, p := range []struct{ attacker, named string }{{attacker4, named4}, {attacker6, named6}} {
			user := "x from " + p.named + " port 1"
			fmt.Fprintf(&b, "Mar  1 10:00:%02d web1 sshd[%d]: Invalid user %s from %s port %d\n", i, 3000+i, user, p.attacker, 50000+i)
			fmt.Fprintf(&b, "Mar  1 10:00:%02d web1 sshd[%d]: Failed password for invalid user %s from %s port %d ssh2\n", i, 3000+i, user, p.attacker, 50000+i)
		}
	}
	log := filepath.Join(dir, "auth.log")
	must(t, os.WriteFile(log, []byte(b.String()), 0o644))

	got := replayedSources(t, "", "--config", cfg, log)
	for _, ip := range []string{attacker4, attacker6} {
		if !got[ip] {
			t.Errorf("the attacker %s is not banned; bans: %v", ip, got)
		}
	}
	for _, ip := range []string{named4, named6} {
		if got[ip] {
			t.Errorf("%s, named in a user name, is banned", ip)
		}
	}
}
