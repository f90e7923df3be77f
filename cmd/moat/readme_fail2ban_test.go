package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readmeSnippet(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	must(t, err)
	_, sec, ok := strings.Cut(string(raw), "\n## Coming from fail2ban\n")
	if !ok {
		t.Fatal(`README.md has no "## Coming from fail2ban" section`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	_, block, ok := strings.Cut(sec, "\n```yaml\n")
	if !ok {
		t.Fatal("the fail2ban section has no yaml block")
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		t.Fatal("the fail2ban section's yaml block does not end")
	}
	return block + "\n"
}

// The README's translation of a jail.local behaves as the jail: three
// failures within 10 minutes ban for 1h, three spread over more do not,
// and the ignoreip address is never banned.
func TestReadmeFail2banTranslation(t *testing.T) {
	snippet := readmeSnippet(t)
	const (
		attacker = "198.51.100.23"
		slow     = "198.51.100.24"
		ignored  = "203.0.113.7"
	)
	if !strings.Contains(snippet, ignored) {
		t.Fatalf("the snippet does not allowlist %s:\n%s", ignored, snippet)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	log := sshFailures(attacker, t0, 3, 4*time.Minute) + // 8 minutes
		sshFailures(slow, t0.Add(time.Hour), 3, 6*time.Minute) + // 12 minutes
		sshFailures(ignored, t0.Add(2*time.Hour), 10, time.Second)
	out := replayThroughDecisions(t, configWithContent(t, snippet), log)

	ds := byValue(out.enforced, attacker)
	if len(ds) != 1 {
		t.Fatalf("%d bans of %s reached the kernel, want 1: %+v", len(ds), attacker, out.decisions)
	}
	d := ds[0]
	if d.Type != "ban" || d.Scenario != "moat/ssh-bf" || d.Simulated {
		t.Errorf("decision %+v: want a ban by moat/ssh-bf", d)
	}
	// The ban runs from when the alert was handled: its end is an hour
	// after a moment between the first alert and the last.
	if d.Until.Before(out.before.Add(time.Hour)) || d.Until.After(out.after.Add(time.Hour)) {
		t.Errorf("ban until %s, want 1h after %s..%s", d.Until, out.before, out.after)
	}
	if n := len(byValue(out.decisions, slow)); n != 0 {
		t.Errorf("%s, 3 failures over 12 minutes, got %d decisions", slow, n)
	}
	if n := len(byValue(out.decisions, ignored)) + len(byValue(out.enforced, ignored)); n != 0 {
		t.Errorf("the ignoreip address %s got %d decisions", ignored, n)
	}
}

// A reload rebuilds the engine when the overrides change, down to a value
// behind a pointer.
