package inject

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/detect/hub"
	"github.com/moatsec/moat/detect/parse"
)

// testConfig is the part of a hub test's config.yaml that names parsers
// and the log; detect/hubtest reads the whole file strictly.
type testConfig struct {
	Parsers     []string          `yaml:"parsers"`
	Collections []string          `yaml:"collections"`
	LogFile     string            `yaml:"log_file"`
	LogType     string            `yaml:"log_type"`
	Labels      map[string]string `yaml:"labels"`
}

// HubTests makes a target of every test under testsDir (a hub's .tests
// directory): its log lines against the parsers its config.yaml names,
// resolved in the hub at hubDir. hubDir may be another snapshot than the
// tests come from, to attack an older hub's parsers with the newer hub's
// samples. Tests that cannot be read or whose parsers hubDir lacks are
// returned in skipped with the reason.
func HubTests(testsDir, hubDir string) (targets []Target, skipped []string, err error) {
	h, err := hub.Open(hubDir)
	if err != nil {
		return nil, nil, err
	}
	ents, err := os.ReadDir(testsDir)
	if err != nil {
		return nil, nil, fmt.Errorf("list hub tests: %w", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		t, err := hubTest(h, filepath.Join(testsDir, e.Name()))
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s: %v", e.Name(), err))
			continue
		}
		if len(t.Parsers) > 0 && len(t.Lines) > 0 {
			targets = append(targets, t)
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Name < targets[j].Name })
	return targets, skipped, nil
}

func hubTest(h *hub.Hub, dir string) (Target, error) {
	name := filepath.Base(dir)
	b, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		return Target{}, err
	}
	var cfg testConfig
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return Target{}, fmt.Errorf("config.yaml: %w", err)
	}
	var files []parse.File
	seen := map[string]bool{}
	add := func(f parse.File) {
		if !seen[f.Path] {
			seen[f.Path] = true
			files = append(files, f)
		}
	}
	if cols := nonEmpty(cfg.Collections); len(cols) > 0 {
		sel, err := h.Select(cols)
		if err != nil {
			return Target{}, err
		}
		for _, f := range sel.Parsers {
			add(f)
		}
	}
	for _, p := range nonEmpty(cfg.Parsers) {
		it, err := h.Ref(hub.Parsers, p)
		if err != nil {
			return Target{}, err
		}
		add(parse.File{Path: it.Path, Stage: it.Stage})
	}
	logName := cfg.LogFile
	if logName == "" {
		logName = name + ".log"
	}
	lines, err := ReadLines(filepath.Join(dir, logName))
	if err != nil {
		return Target{}, err
	}
	labels := map[string]string{"type": cfg.LogType}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	return Target{Name: name, Parsers: files, Labels: labels, Lines: lines}, nil
}

func nonEmpty(s []string) []string {
	var out []string
	for _, x := range s {
		if strings.TrimSpace(x) != "" {
			out = append(out, x)
		}
	}
	return out
}

// ReadLines returns a log file's non-empty lines without line endings.
func ReadLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read samples: %w", err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), "\r"); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read samples %s: %w", path, err)
	}
	return out, nil
}
