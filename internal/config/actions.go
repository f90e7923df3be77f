package config

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/template"
	"time"
)

// Action is one named command under actions:, run on bans and unbans once
// the kernel holds them (or dropped them): an abuse report, a switch ACL,
// a ticket. Args and env values are Go text/templates over the event
// (enforce/action documents the fields); the command runs without a shell,
// so a templated value is one argument whatever it contains.
type Action struct {
	// Command is the program's absolute path.
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args,omitempty"`
	Env     map[string]string `yaml:"env,omitempty"`
	// On lists the events that run it: ban, unban or both (default ban).
	On []string `yaml:"on,omitempty"`
	// Origins, when set, limits it to decisions of these origins (local,
	// cli, api, community, list, fleet ...).
	Origins []string `yaml:"origins,omitempty"`
	// Restored runs it for bans restored from the store at start too
	// (default false: they ran when first banned).
	Restored bool `yaml:"restored,omitempty"`
	// Timeout bounds one run; past it the command's process group is
	// killed (default 30s).
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Concurrency is how many runs at once (default 2); Queue how many
	// events wait (default 1000): past it events are dropped and counted,
	// the ban path never waits.
	Concurrency int `yaml:"concurrency,omitempty"`
	Queue       int `yaml:"queue,omitempty"`
}

// Action events.
const (
	ActionBan   = "ban"
	ActionUnban = "unban"
)

// ActionNames returns the configured action names, sorted.
func (c *Config) ActionNames() []string {
	names := make([]string, 0, len(c.Actions))
	for n := range c.Actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ActionError is an error at a key of action name, at its line in the
// file the configuration came from; keys empty points at the action.
func (c *Config) ActionError(name, msg string, keys ...any) error {
	return c.errAt(fmt.Sprintf("action %s: %s", name, msg), append([]any{"actions", name}, keys...)...)
}

func (c *Config) validateActions(bad func(msg string, keys ...any) error) error {
	for _, name := range c.ActionNames() {
		a := c.Actions[name]
		at := func(msg string, keys ...any) error {
			return bad(fmt.Sprintf("action %s: %s", name, msg), append([]any{"actions", name}, keys...)...)
		}
		if !notifyName.MatchString(name) {
			return bad(fmt.Sprintf("action name %q: want 1 to 64 letters, digits, '.', '-' or '_'", short(name)), "actions")
		}
		if a.Command == "" || !filepath.IsAbs(a.Command) {
			return at(fmt.Sprintf("command %q: want an absolute path (no shell runs it)", short(a.Command)), "command")
		}
		for i, arg := range a.Args {
			if _, err := template.New("arg").Parse(arg); err != nil {
				return at(fmt.Sprintf("args[%d]: %v", i, err), "args", i)
			}
		}
		for k, v := range a.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				return at(fmt.Sprintf("env name %q: want a name without '='", short(k)), "env")
			}
			if _, err := template.New(k).Parse(v); err != nil {
				return at(fmt.Sprintf("env %s: %v", k, err), "env", k)
			}
		}
		for i, on := range a.On {
			if on != ActionBan && on != ActionUnban {
				return at(fmt.Sprintf("on %q: want ban or unban", short(on)), "on", i)
			}
		}
		if len(a.On) > 2 || len(a.On) == 2 && a.On[0] == a.On[1] {
			return at("on lists an event twice", "on")
		}
		if slices.Contains(a.Origins, "") {
			return at("empty origin", "origins")
		}
		if a.Timeout < 0 || a.Timeout > time.Hour {
			return at(fmt.Sprintf("timeout %s: want up to 1h (0 is 30s)", a.Timeout), "timeout")
		}
		if a.Concurrency < 0 || a.Concurrency > 64 {
			return at(fmt.Sprintf("concurrency %d: want 1 to 64 (0 is 2)", a.Concurrency), "concurrency")
		}
		if a.Queue < 0 || a.Queue > 1_000_000 {
			return at(fmt.Sprintf("queue %d: want up to 1000000 (0 is 1000)", a.Queue), "queue")
		}
	}
	return nil
}
