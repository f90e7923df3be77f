package action

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/model"
)

// script writes an executable shell script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs m until the test ends.
func start(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// waitFor polls cond, generously: the machine may be loaded.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func runs(m *Manager, name string, res Result) uint64 {
	for _, s := range m.Stats() {
		if s.Name == name {
			return s.Runs[res]
		}
	}
	return 0
}

func compile(t *testing.T, name string, a config.Action) *Spec {
	t.Helper()
	s, err := Compile(name, a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func decisionOn(id int64, value string, origin model.Origin, until time.Time) model.Decision {
	return model.Decision{ID: id, Value: netip.MustParsePrefix(value), Type: "ban", Origin: origin, Scenario: "crowdsecurity/ssh-bf", Reason: "ssh bf", Until: until}
}

// TestArgsAndEnv: a real script records its arguments and environment.
func TestArgsAndEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MOAT_TEST_DAEMON_SECRET", "must-not-leak")
	rec := script(t, dir, "record.sh", `out="$OUT_DIR/$MOAT_EVENT-$MOAT_ID"
for a in "$@"; do printf 'arg=%s\n' "$a"; done > "$out.tmp"
env | grep -E '^(MOAT_|OUT_DIR|CUSTOM|PATH)' | sort >> "$out.tmp"
mv "$out.tmp" "$out"
`)
	m := New(compile(t, "record", config.Action{
		Command:  rec,
		Args:     []string{"--ip", "{{.Value}}", "{{.Scenario}} {{.Duration}}", "restored={{.Restored}}"},
		Env:      map[string]string{"OUT_DIR": dir, "CUSTOM": "{{.Event}}:{{.Origin}}:{{.Scope}}"},
		On:       []string{"ban", "unban"},
		Restored: true,
	}))
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	start(t, m)

	m.Enforced(true, []model.Decision{decisionOn(7, "198.18.20.1/32", model.OriginLocal, now.Add(4*time.Hour))})
	restoredBan := decisionOn(8, "198.18.21.0/24", model.OriginCLI, time.Time{})
	restoredBan.Ports, restoredBan.Protocol = []uint16{22, 2222}, "tcp"
	m.Restored([]model.Decision{restoredBan})
	m.Enforced(false, []model.Decision{decisionOn(7, "198.18.20.1/32", model.OriginLocal, now.Add(4*time.Hour))})

	read := func(name string) string {
		t.Helper()
		var data []byte
		waitFor(t, name, func() bool {
			var err error
			data, err = os.ReadFile(filepath.Join(dir, name))
			return err == nil
		})
		return string(data)
	}
	ban := read("ban-7")
	for _, want := range []string{
		"arg=--ip\narg=198.18.20.1\narg=crowdsecurity/ssh-bf 4h0m0s\narg=restored=false\n",
		"MOAT_VALUE=198.18.20.1\n", "MOAT_SCOPE=Ip\n", "MOAT_SCENARIO=crowdsecurity/ssh-bf\n", "MOAT_DURATION=4h0m0s\n",
		"MOAT_ORIGIN=local\n", "MOAT_RESTORED=false\n", "MOAT_UNTIL=2026-12-07T12:00:00Z\n", "CUSTOM=ban:local:Ip\n",
	} {
		if !strings.Contains(ban, want) {
			t.Errorf("ban run: missing %q in\n%s", want, ban)
		}
	}
	if strings.Contains(ban, "must-not-leak") {
		t.Errorf("the daemon's environment reached the command:\n%s", ban)
	}
	restored := read("ban-8")
	for _, want := range []string{"arg=198.18.21.0/24\n", "arg=restored=true\n", "MOAT_DURATION=forever\n", "MOAT_SCOPE=Range\n", "MOAT_UNTIL=\n", "MOAT_RESTORED=true\n", "MOAT_PORTS=22,2222\n", "MOAT_PROTOCOL=tcp\n"} {
		if !strings.Contains(restored, want) {
			t.Errorf("restored forever ban: missing %q in\n%s", want, restored)
		}
	}
	if unban := read("unban-7"); !strings.Contains(unban, "MOAT_EVENT=unban\n") || !strings.Contains(unban, "CUSTOM=unban:local:Ip\n") {
		t.Errorf("unban run:\n%s", unban)
	}
	waitFor(t, "three ok runs", func() bool { return runs(m, "record", ResultOK) == 3 })
	if st := m.Stats()[0]; st.Exits[0] != 3 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestFilters: on, origins and restored select the events an action runs for.
func TestFilters(t *testing.T) {
	dir := t.TempDir()
	touch := script(t, dir, "touch.sh", `: > "$1/$2-$MOAT_EVENT-$MOAT_ID"`+"\n")
	m := New(
		compile(t, "local-bans", config.Action{Command: touch, Args: []string{dir, "local-bans"}, Origins: []string{"local"}}),
		compile(t, "unbans", config.Action{Command: touch, Args: []string{dir, "unbans"}, On: []string{"unban"}}),
		compile(t, "with-restored", config.Action{Command: touch, Args: []string{dir, "with-restored"}, Restored: true}),
	)
	start(t, m)
	until := time.Now().Add(time.Hour)
	m.Enforced(true, []model.Decision{decisionOn(1, "198.18.22.1/32", model.OriginLocal, until), decisionOn(2, "198.18.22.2/32", model.OriginCommunity, until)})
	m.Restored([]model.Decision{decisionOn(3, "198.18.22.3/32", model.OriginLocal, until)})
	m.Enforced(false, []model.Decision{decisionOn(1, "198.18.22.1/32", model.OriginLocal, until)})
	want := []string{"local-bans-ban-1", "unbans-unban-1", "with-restored-ban-1", "with-restored-ban-2", "with-restored-ban-3"}
	waitFor(t, "five runs", func() bool {
		var n uint64
		for _, s := range m.Stats() {
			n += s.Runs[ResultOK]
		}
		return n == uint64(len(want))
	})
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		if e.Name() != "touch.sh" {
			got = append(got, e.Name())
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("ran %v, want %v", got, want)
	}
}

// alive reports whether pid runs (a zombie nobody reaped yet has ended).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestTimeoutKillsProcessGroup: a hung command and the child it started
// are both killed at the timeout, and the run counts as one.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	hang := script(t, dir, "hang.sh", `sleep 300 &
echo $! > "$1/child.pid"
echo $$ > "$1/self.pid"
echo hanging
wait
`)
	m := New(compile(t, "hang", config.Action{Command: hang, Args: []string{dir}, Timeout: 2 * time.Second}))
	errs := make(chan error, 4)
	m.OnError = func(_ string, _ Event, err error) { errs <- err }
	start(t, m)
	m.Enforced(true, []model.Decision{decisionOn(1, "198.18.23.1/32", model.OriginLocal, time.Now().Add(time.Hour))})
	waitFor(t, "the timeout", func() bool { return runs(m, "hang", ResultTimeout) == 1 })
	for _, f := range []string{"self.pid", "child.pid"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, f+" to end", func() bool { return !alive(pid) })
		if err := syscall.Kill(pid, 0); err == nil && alive(pid) {
			t.Errorf("%s %d still runs", f, pid)
		}
	}
	if st := m.Stats()[0]; st.Exits[-1] != 1 || st.Runs[ResultOK] != 0 {
		t.Errorf("stats %+v", st)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "killed after 2s") || !strings.Contains(err.Error(), "hanging") {
			t.Errorf("reported %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("the timeout was not reported")
	}
}

// TestExitStatusCounted: a command's exit status is counted by value.
func TestExitStatusCounted(t *testing.T) {
	dir := t.TempDir()
	fail := script(t, dir, "fail.sh", "echo refused >&2\nexit $1\n")
	m := New(compile(t, "fail", config.Action{Command: fail, Args: []string{"{{if eq .Value \"198.18.24.1\"}}3{{else}}0{{end}}"}}))
	start(t, m)
	until := time.Now().Add(time.Hour)
	m.Enforced(true, []model.Decision{decisionOn(1, "198.18.24.1/32", model.OriginLocal, until), decisionOn(2, "198.18.24.2/32", model.OriginLocal, until), decisionOn(3, "198.18.24.1/32", model.OriginLocal, until)})
	waitFor(t, "three runs", func() bool { return runs(m, "fail", ResultExit) == 2 && runs(m, "fail", ResultOK) == 1 })
	if st := m.Stats()[0]; st.Exits[3] != 2 || st.Exits[0] != 1 {
		t.Errorf("exits %v", st.Exits)
	}
}

// TestFullQueueDrops: a queue that is full drops and counts, and
// announcing never waits for a command.
func TestFullQueueDrops(t *testing.T) {
	dir := t.TempDir()
	slow := script(t, dir, "slow.sh", "sleep 60\n")
	m := New(compile(t, "slow", config.Action{Command: slow, Timeout: time.Minute, Concurrency: 1, Queue: 3}))
	start(t, m)
	until := time.Now().Add(time.Hour)
	var ds []model.Decision
	for i := range 100 {
		ds = append(ds, decisionOn(int64(i+1), fmt.Sprintf("198.18.25.%d/32", i), model.OriginLocal, until))
	}
	began := time.Now()
	for _, d := range ds {
		m.Enforced(true, []model.Decision{d})
	}
	// 100 announcements against a command that takes a minute: if one
	// waited, this would take minutes.
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("announcing took %s", took)
	}
	st := m.Stats()[0]
	// One runs (or is about to), three wait, the rest are dropped.
	if st.Dropped < 96 || st.Dropped > 97 || st.Queued > 3 || st.QueueCap != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestFromConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ok := script(t, dir, "ok.sh", "exit 0\n")
	notExec := filepath.Join(dir, "plain")
	os.WriteFile(notExec, []byte("x"), 0o644)
	for _, tc := range []struct{ src, want string }{
		{fmt.Sprintf("actions:\n  a:\n    command: %s\n    args: [\"{{.NoSuchField}}\"]\n", ok), "moat.yaml:4: action a: args[0]: template: args:1:2: executing"},
		{fmt.Sprintf("actions:\n  a:\n    command: %s\n    env:\n      X: \"{{.Nope}}\"\n", ok), "moat.yaml:5: action a: env X: template: X:1:2: executing"},
		{"actions:\n  a:\n    command: " + filepath.Join(dir, "missing") + "\n", "moat.yaml:3: action a: command: stat"},
		{"actions:\n  a:\n    command: " + notExec + "\n", "moat.yaml:3: action a: command " + notExec + ": not an executable file"},
	} {
		cfg, err := config.Parse("moat.yaml", []byte(tc.src))
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		_, err = FromConfig(&cfg)
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
	cfg, err := config.Parse("moat.yaml", []byte(fmt.Sprintf("actions:\n  a:\n    command: %s\n    args: [\"{{.Value}}\"]\n", ok)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := FromConfig(&cfg)
	if err != nil || m.Len() != 1 {
		t.Fatalf("good config: %v", err)
	}
}

// TestLingeringChild: a command that exits 0 but leaves a child holding its
// output counts as ok, and the child is killed rather than left behind.
func TestLingeringChild(t *testing.T) {
	dir := t.TempDir()
	linger := script(t, dir, "linger.sh", `sleep 300 &
echo $! > "$1/.child"
mv "$1/.child" "$1/child.pid"
exit 0
`)
	m := New(compile(t, "linger", config.Action{Command: linger, Args: []string{dir}}))
	start(t, m)
	m.Enforced(true, []model.Decision{decisionOn(1, "198.18.26.1/32", model.OriginLocal, time.Now().Add(time.Hour))})
	waitFor(t, "the run", func() bool { return runs(m, "linger", ResultOK) == 1 })
	data, err := os.ReadFile(filepath.Join(dir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the child to end", func() bool { return !alive(pid) })
}
