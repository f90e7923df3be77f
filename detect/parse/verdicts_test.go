package parse

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func withoutVerdictCache(ns []*node) {
	for _, n := range ns {
		n.filterGroup = -1
		withoutVerdictCache(n.children)
	}
}

// Keeping filter verdicts by the value of the field they read changes no
// event: moat's shipped parsers give the same verdicts, fields and stages
// with the cache and without, on the packaged content's test logs and on
// lines from more program names than the cache keeps, interleaved so that
// it starts over with values it had.
func TestFilterVerdictsChangeNothing(t *testing.T) {
	root := "../../packaging"
	files, _ := filepath.Glob(filepath.Join(root, "hub/parsers/*/moat/*.yaml"))
	var specs []File
	for _, f := range files {
		specs = append(specs, File{Path: f, Stage: filepath.Base(filepath.Dir(filepath.Dir(f)))})
	}
	opts := Options{PatternDir: filepath.Join(root, "patterns")}
	cached, plain := mustLoad(t, specs, opts), mustLoad(t, specs, opts)
	for _, ns := range plain.nodes {
		withoutVerdictCache(ns)
	}
	programFilters := 0
	for _, g := range cached.filterGroups {
		if g.field.Kind == "Parsed" && g.field.Name == "program" {
			programFilters = g.size
		}
	}
	if programFilters < 10 {
		t.Fatalf("%d filters on evt.Parsed.program keep their verdicts, want the shipped s01 parsers' (over 10)", programFilters)
	}

	logs, lines := readLogs(t, filepath.Join(root, "testdata/content/*.log"))
	if logs == 0 || len(lines) < 100 {
		t.Fatalf("%d test logs, %d lines: too little to compare on", logs, len(lines))
	}
	// Neighbours of one length with other verdicts, then names enough to
	// fill the cache and start it over.
	programs := []string{"sshd", "cron", "sshd", "sshd-session", "postfix/smtpd", "postfix/qmgr", "nginx", "nginz", "nginx-proxy", "mysqld", "kernel", "", "sshd "}
	for i := range 3 * maxVerdictValues {
		programs = append(programs, fmt.Sprintf("prog%d", i%(maxVerdictValues+100)))
	}
	for i, prog := range programs {
		l := lines[i%len(lines)]
		if msg := strings.Index(l, ": "); msg > 0 && strings.Count(l[:msg], " ") >= 4 {
			lines = append(lines, "Dec  7 03:14:15 host "+prog+"[42]"+l[msg:])
		}
		lines = append(lines, "Dec  7 03:14:15 host "+prog+"[42]: Failed password for root from 198.18.0.1 port 22 ssh2")
	}

	for _, typ := range []string{"syslog", "nginx"} {
		sameEvents(t, "the cache", cached, plain, typ, lines)
	}
}
