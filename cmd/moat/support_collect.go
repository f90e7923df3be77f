package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/version"
)

// supportTimeout bounds each question to the daemon: a stuck daemon is
// what a support dump is often for, and must not hang it.
const supportTimeout = 15 * time.Second

// collectSupport gathers what it can; each part that fails is recorded
// in the bundle, never fatal.
func (a *app) collectSupport(cmd *cobra.Command) *bundle {
	b := &bundle{}
	ctx := cmd.Context()
	cfg, cfgErr := a.loadConfig(cmd)
	if cfgErr != nil {
		// A configuration that does not load is a common reason to ask
		// for help; the defaults still find the socket and the metrics.
		b.miss("config.yaml", fmt.Errorf("the configuration does not load: %w", cfgErr))
		cfg = config.Default()
	} else {
		b.addSecrets(cfg.Secrets()...)
		for _, p := range cfg.SecretFiles() {
			if data, err := readBounded(p, 64<<10); err == nil {
				b.addSecrets(strings.TrimSpace(string(data)))
				for _, l := range strings.Split(string(data), "\n") {
					b.addSecrets(strings.TrimSpace(l))
				}
			}
		}
		if y, err := cfg.Redact(); err != nil {
			b.miss("config.yaml", err)
		} else {
			b.add("config.yaml", y)
		}
	}
	var c *api.Client
	if cfg.API.Socket != "" {
		c = api.NewClient(cfg.API.Socket)
	}
	daemon := func(name string, f func(ctx context.Context) ([]byte, error)) {
		if c == nil {
			b.miss(name, fmt.Errorf("%w: api.socket is empty", errNoDaemon))
			return
		}
		ctx, cancel := context.WithTimeout(ctx, supportTimeout)
		defer cancel()
		data, err := f(ctx)
		if err != nil {
			b.miss(name, fmt.Errorf("%w: %w", errNoDaemon, err))
			return
		}
		b.add(name, data)
	}
	var st *api.Status
	daemon("status.json", func(ctx context.Context) ([]byte, error) {
		s, err := c.Status(ctx)
		if err != nil {
			return nil, err
		}
		st = &s
		return json.MarshalIndent(s, "", "  ")
	})
	b.add("versions.txt", versionsText(cfg, st))
	if cfgErr == nil {
		if rows, err := hubList(cfg, nil, true); err != nil {
			b.miss("hub.json", err)
		} else {
			b.addJSON("hub.json", rows)
		}
		if srcs, err := supportSources(cfg, st); err != nil {
			b.miss("sources.json", err)
		} else {
			b.addJSON("sources.json", srcs)
		}
	} else {
		b.miss("hub.json", errNoConfig)
		b.miss("sources.json", errNoConfig)
	}
	if data, err := supportMetrics(ctx, cfg.Metrics.Listen); err != nil {
		b.miss("metrics.txt", err)
	} else {
		b.add("metrics.txt", data)
	}
	b.addLogs(ctx, c)
	daemon("goroutines.txt", func(ctx context.Context) ([]byte, error) { return c.Goroutines(ctx) })
	return b
}

var errNoConfig = fmt.Errorf("needs the configuration, which does not load")

func (b *bundle) addJSON(name string, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		b.miss(name, err)
		return
	}
	b.add(name, append(data, '\n'))
}

// addLogs takes the daemon's kept warnings and errors, else the journal
// of moat.service.
func (b *bundle) addLogs(ctx context.Context, c *api.Client) {
	var daemonErr error = fmt.Errorf("%w: api.socket is empty", errNoDaemon)
	if c != nil {
		ctx, cancel := context.WithTimeout(ctx, supportTimeout)
		lines, err := c.RecentLogs(ctx)
		cancel()
		if err == nil {
			b.add("logs.txt", []byte("# the daemon's latest warnings and errors, oldest first\n"+strings.Join(lines, "")))
			return
		}
		daemonErr = fmt.Errorf("%w: %w", errNoDaemon, err)
	}
	lines, err := journalErrors(supportJournalLines)
	if err != nil {
		b.miss("logs.txt", fmt.Errorf("%v; the journal of %s: %w", daemonErr, moatUnit, err))
		return
	}
	if len(lines) == 0 {
		lines = []string{"(none)\n"}
	}
	b.add("logs.txt", []byte(fmt.Sprintf("# %v\n# warnings and errors of %s in the journal, oldest first\n%s", daemonErr, moatUnit, strings.Join(lines, ""))))
}

func versionsText(cfg config.Config, st *api.Status) []byte {
	var s strings.Builder
	host, _ := os.Hostname()
	kernel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		kernel = []byte("unknown (" + err.Error() + ")")
	}
	fmt.Fprintf(&s, "moat:      %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&s, "kernel:    %s\n", strings.TrimSpace(string(kernel)))
	fmt.Fprintf(&s, "host:      %s\n", host)
	fmt.Fprintf(&s, "uid:       %d\n", os.Getuid())
	fmt.Fprintf(&s, "collected: %s\n", time.Now().UTC().Format(time.RFC3339))
	src := cfg.Source
	if src == "" {
		src = "(built-in default)"
	}
	fmt.Fprintf(&s, "config:    %s\n", src)
	if st != nil {
		fmt.Fprintf(&s, "daemon:    %s, started %s\n", st.Version, st.StartedAt.UTC().Format(time.RFC3339))
	} else {
		s.WriteString("daemon:    not answering (see README.txt)\n")
	}
	return []byte(s.String())
}

// supportSource is a configured source as sources.json shows it: what
// it reads, where it saved its position, and what the daemon says of it.
// The command of a command source is left out: it may carry a token.
type supportSource struct {
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Type      string          `json:"type,omitempty"`
	Inputs    []string        `json:"inputs,omitempty"`
	StateFile string          `json:"state_file,omitempty"`
	Position  json.RawMessage `json:"position,omitempty"`
	// PositionError says why no position was read ("none saved yet").
	PositionError string `json:"position_error,omitempty"`
	Lines         *int64 `json:"lines_read,omitempty"`
	Error         string `json:"error,omitempty"`
}

func supportSources(cfg config.Config, st *api.Status) ([]supportSource, error) {
	c, err := resolveContent(cfg)
	if err != nil {
		return nil, err
	}
	defer c.cleanup()
	acqs, err := acquire.LoadConfigDir(c.acquisDir)
	if err != nil {
		return nil, err
	}
	out := []supportSource{}
	for _, ac := range acqs {
		name, path := acquire.StateOf(ac, filepath.Join(cfg.StateDir, "acquire"))
		s := supportSource{Name: name, Kind: ac.Source, Type: ac.Labels["type"], StateFile: path}
		switch ac.Source {
		case acquire.KindFile:
			s.Inputs = ac.Patterns()
		case acquire.KindJournal:
			s.Inputs = ac.JournalctlFilter
		}
		if path != "" {
			s.Position, err = readPosition(path)
			if err != nil {
				s.PositionError = err.Error()
			}
		}
		if st != nil {
			for _, ls := range st.Sources {
				if ls.Name == name {
					n := ls.Lines
					s.Lines, s.Error = &n, ls.Error
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// readPosition reads a saved position without the fingerprints of file
// sources ("fp": the first bytes of a log, which are log content).
func readPosition(path string) (json.RawMessage, error) {
	data, err := readBounded(path, 4<<20)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("none saved yet")
	}
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return json.Marshal(dropKey(v, "fp"))
}

func dropKey(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		delete(x, key)
		for k, e := range x {
			x[k] = dropKey(e, key)
		}
	case []any:
		for i, e := range x {
			x[i] = dropKey(e, key)
		}
	}
	return v
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// supportMetrics scrapes the daemon's metrics as moat metrics does.
func supportMetrics(ctx context.Context, listen string) ([]byte, error) {
	url, err := scrapeURL(listen)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, supportTimeout)
	defer cancel()
	raw, _, err := fetchMetrics(ctx, &http.Client{}, url)
	return raw, err
}
