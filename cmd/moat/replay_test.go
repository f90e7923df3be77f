package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/moatsec/moat/enforce/api"
)

// genCorpus writes the shared corpus generator's auth.log and truth.tsv.
func genCorpus(t *testing.T, sshLines string) string {
	t.Helper()
	gen := filepath.Join(repoRoot(t), "..", "shared", "corpus", "gen-corpus")
	if _, err := os.Stat(gen); err != nil {
		t.Skipf("SKIPPED: the corpus generator %s is missing (../shared beside the checkout)", gen)
	}
	dir := t.TempDir()
	if out, err := exec.Command(gen, "--ssh-lines", sshLines, "--nginx-lines", "1", "--seed", "1", dir).CombinedOutput(); err != nil {
		t.Fatalf("gen-corpus: %v\n%s", err, out)
	}
	return dir
}

func replayedSources(t *testing.T, stdin string, args ...string) map[string]bool {
	t.Helper()
	code, out, errOut := runMoat(t, stdin, append([]string{"replay", "-o", "json", "--year", "2026"}, args...)...)
	if code != exitOK {
		t.Fatalf("moat replay %v: exit %d: %s", args, code, errOut)
	}
	var rows []api.Alert
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("replay output is not JSON: %v\n%s", err, out)
	}
	got := map[string]bool{}
	for _, r := range rows {
		if r.Start.Year() != 2026 || r.Stop.Before(r.Start) {
			t.Fatalf("alert times come from the log (2026), got %v..%v", r.Start, r.Stop)
		}
		got[r.Value] = true
	}
	return got
}

func TestReplayFindsTheCorpusAttackers(t *testing.T) {
	dir := genCorpus(t, "20k")
	got := replayedSources(t, "", filepath.Join(dir, "auth.log"))

	f, err := os.Open(filepath.Join(dir, "truth.tsv"))
	must(t, err)
	defer f.Close()
	want, benign := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 4 || cols[0] != "auth.log" {
			continue
		}
		if cols[3] == "yes" {
			want[cols[1]] = true
		} else {
			benign[cols[1]] = true
		}
	}
	if len(want) == 0 {
		t.Fatal("truth.tsv names no attacker")
	}
	var missed, falseBans []string
	for ip := range want {
		if !got[ip] {
			missed = append(missed, ip)
		}
	}
	for ip := range got {
		if benign[ip] || !want[ip] {
			falseBans = append(falseBans, ip)
		}
	}
	sort.Strings(missed)
	sort.Strings(falseBans)
	t.Logf("%d attackers in truth.tsv, %d caught, %d missed, %d false bans", len(want), len(want)-len(missed), len(missed), len(falseBans))
	if len(missed) > 0 || len(falseBans) > 0 {
		t.Fatalf("missed %v; false bans %v", missed, falseBans)
	}
}

func TestReplayGzipAndStdinAgree(t *testing.T) {
	dir := genCorpus(t, "5k")
	plain := filepath.Join(dir, "auth.log")
	data, err := os.ReadFile(plain)
	must(t, err)
	gz := plain + ".gz"
	out, err := os.Create(gz)
	must(t, err)
	zw := gzip.NewWriter(out)
	_, err = zw.Write(data)
	must(t, err)
	must(t, zw.Close())
	must(t, out.Close())

	fromPlain := replayedSources(t, "", plain)
	if len(fromPlain) == 0 {
		t.Fatal("the plain replay found no attacker")
	}
	for name, src := range map[string]map[string]bool{
		"gzip":  replayedSources(t, "", gz),
		"stdin": replayedSourcesStdin(t, plain),
	} {
		if len(src) != len(fromPlain) {
			t.Fatalf("%s replay found %d sources, plain %d", name, len(src), len(fromPlain))
		}
		for ip := range fromPlain {
			if !src[ip] {
				t.Fatalf("%s replay misses %s", name, ip)
			}
		}
	}
}

// replayedSourcesStdin runs moat replay - in a child, whose stdin is the file.
func replayedSourcesStdin(t *testing.T, path string) map[string]bool {
	t.Helper()
	in, err := os.Open(path)
	must(t, err)
	defer in.Close()
	cmd := moatCommand("replay", "-o", "json", "--year", "2026", "-")
	cmd.Stdin = in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("moat replay -: %v", err)
	}
	var rows []api.Alert
	must(t, json.Unmarshal(out, &rows))
	got := map[string]bool{}
	for _, r := range rows {
		got[r.Value] = true
	}
	return got
}
