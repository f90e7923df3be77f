package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Throughput is one tool replaying one log of one corpus, over every
// repetition.
type Throughput struct {
	Tool    string `json:"tool"`
	Log     string `json:"log"`    // auth.log or access.log
	Corpus  string `json:"corpus"` // main, large (moat alone, once) or peer (beside the peers)
	Lines   int    `json:"lines"`
	Workers int    `json:"workers,omitempty"` // moat's --workers; 0 for a peer
	// LinesPerSec is lines over wall time, start-up included;
	// LinesPerCPUSec is lines over user+system CPU time: the rate one core
	// sustains.
	LinesPerSec    Stat `json:"lines_per_s"`
	LinesPerCPUSec Stat `json:"lines_per_cpu_s"`
	WallSec        Stat `json:"wall_s"`
	CPUSec         Stat `json:"cpu_s"`
	RSSMiB         Stat `json:"peak_rss_mib"`
	// Accuracy against truth.tsv (sources whose expected_ban is yes), from
	// the first repetition.
	Expected  int     `json:"expected"`
	Detected  int     `json:"detected"`
	Caught    int     `json:"caught"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
}

// corpus is a generated log corpus with its ground truth.
type corpus struct {
	dir  string
	year int
	// lines per log file.
	lines map[string]int
	// truth: log file -> source -> expected ban.
	truth map[string]map[string]bool
}

// genCorpus generates (or finds in the cache) the corpus of the given size.
func genCorpus(ctx context.Context, o *Options, ssh, nginx int) (*corpus, error) {
	gen := filepath.Join(o.Repo, "..", "shared", "corpus", "gen-corpus")
	if _, err := os.Stat(gen); err != nil {
		return nil, fmt.Errorf("%w: %v", errNoCorpus, err)
	}
	dir := filepath.Join(o.CacheDir, fmt.Sprintf("corpus-ssh%d-nginx%d-seed1", ssh, nginx))
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
		logf(o.Log, "generating corpus %s", filepath.Base(dir))
		// Into a directory of this run's own, then renamed: two runs
		// generating at once each finish, and one of them wins.
		tmp, err := os.MkdirTemp(o.CacheDir, filepath.Base(dir)+".tmp-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if _, err := run(ctx, gen, "--ssh-lines", fmt.Sprint(ssh), "--nginx-lines", fmt.Sprint(nginx), "--seed", "1", tmp); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, dir); err != nil {
			if _, statErr := os.Stat(filepath.Join(dir, "meta.json")); statErr != nil {
				return nil, err
			}
		}
	}
	return loadCorpus(dir)
}

func loadCorpus(dir string) (*corpus, error) {
	c := &corpus{dir: dir, lines: map[string]int{}, truth: map[string]map[string]bool{}}
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	var meta struct {
		Start float64 `json:"start_epoch"`
		Files map[string]struct {
			Lines int `json:"lines"`
		} `json:"files"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("%s/meta.json: %w", dir, err)
	}
	c.year = time.Unix(int64(meta.Start), 0).UTC().Year()
	for name, f := range meta.Files {
		c.lines[name] = f.Lines
	}
	f, err := os.Open(filepath.Join(dir, "truth.tsv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 4 || cols[0] == "log" {
			continue
		}
		if c.truth[cols[0]] == nil {
			c.truth[cols[0]] = map[string]bool{}
		}
		c.truth[cols[0]][cols[1]] = cols[3] == "yes"
	}
	return c, sc.Err()
}

// errNoCorpus skips the replay parts where the shared material is absent.
var errNoCorpus = errors.New("the corpus generator is missing (../shared/corpus beside the checkout)")

// logType is the acquisition label type each corpus log takes.
var logType = map[string]string{"auth.log": "syslog", "access.log": "nginx"}

// replayConfig writes the configuration moat replay runs with: the
// checkout's shipped content.
func replayConfig(o *Options) (string, error) {
	path := filepath.Join(o.WorkDir, "replay.yaml")
	cfg := fmt.Sprintf("state_dir: %[1]s/replay-state\nhub:\n  dir: %[2]s/packaging/hub\n  patterns: %[2]s/packaging/patterns\n  data: %[1]s/replay-data\nprofiles: %[2]s/packaging/profiles.yaml\n", o.WorkDir, o.Repo)
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// sample is one measured run of one tool on one log.
type sample struct {
	u        usage
	detected map[string]bool
}

// moatReplay runs moat replay on one log and returns its cost and the
// sources it alerted on.
func moatReplay(ctx context.Context, o *Options, c *corpus, log string, workers int) (sample, error) {
	cfg, err := replayConfig(o)
	if err != nil {
		return sample{}, err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, o.moatBin, "replay", "--config", cfg, "--type", logType[log], "--year", fmt.Sprint(c.year),
		"--workers", fmt.Sprint(workers), "-o", "json", filepath.Join(c.dir, log))
	u, err := runMeasured(cmd, &out)
	if err != nil {
		return sample{}, err
	}
	var alerts []struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(out.Bytes(), &alerts); err != nil {
		return sample{}, fmt.Errorf("moat replay output: %w", err)
	}
	s := sample{u: u, detected: map[string]bool{}}
	for _, a := range alerts {
		s.detected[a.Value] = true
	}
	return s, nil
}

// summarise turns the samples of one tool on one log into a Throughput.
func summarise(tool, log, corpusName string, c *corpus, workers int, ss []sample) Throughput {
	t := Throughput{Tool: tool, Log: log, Corpus: corpusName, Lines: c.lines[log], Workers: workers}
	var lps, lpc, wall, cpu, rss []float64
	for _, s := range ss {
		lps = append(lps, float64(t.Lines)/s.u.Wall.Seconds())
		lpc = append(lpc, float64(t.Lines)/max(s.u.CPU.Seconds(), 1e-3))
		wall = append(wall, s.u.Wall.Seconds())
		cpu = append(cpu, s.u.CPU.Seconds())
		rss = append(rss, float64(s.u.MaxRSS)/(1<<20))
	}
	t.LinesPerSec, t.LinesPerCPUSec, t.WallSec, t.CPUSec, t.RSSMiB = newStat(lps), newStat(lpc), newStat(wall), newStat(cpu), newStat(rss)
	if len(ss) > 0 {
		truth := c.truth[log]
		for ip, ban := range truth {
			if ban {
				t.Expected++
				if ss[0].detected[ip] {
					t.Caught++
				}
			}
		}
		t.Detected = len(ss[0].detected)
		if t.Detected > 0 {
			t.Precision = float64(t.Caught) / float64(t.Detected)
		}
		if t.Expected > 0 {
			t.Recall = float64(t.Caught) / float64(t.Expected)
		}
	}
	return t
}

// runThroughput replays the main corpus's two logs with 1 and 2 workers,
// the repetitions interleaved.
func runThroughput(ctx context.Context, o *Options, res *Result) error {
	c, err := genCorpus(ctx, o, o.SSHLines, o.NginxLines)
	if errors.Is(err, errNoCorpus) {
		res.Skipped = append(res.Skipped, "throughput: SKIPPED, "+err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	type key struct {
		log     string
		workers int
	}
	keys := []key{{"auth.log", 1}, {"auth.log", 2}, {"access.log", 1}, {"access.log", 2}}
	samples := map[key][]sample{}
	reps := o.Reps
	if o.ThroughputReps > 0 {
		reps = min(reps, o.ThroughputReps)
	}
	for rep := range reps {
		for _, k := range keys {
			logf(o.Log, "moat replay %s (%d lines), %d worker(s), run %d/%d", k.log, c.lines[k.log], k.workers, rep+1, reps)
			s, err := moatReplay(ctx, o, c, k.log, k.workers)
			if err != nil {
				return err
			}
			samples[k] = append(samples[k], s)
		}
	}
	for _, k := range keys {
		res.Throughput = append(res.Throughput, summarise("moat", k.log, "main", c, k.workers, samples[k]))
	}
	if o.LargeSSHLines == 0 {
		return nil
	}
	// The large sshd corpus, once per worker count: ten times the main
	// one, to show the rate holds and what memory a long log costs.
	big, err := genCorpus(ctx, o, o.LargeSSHLines, o.NginxLines)
	if err != nil {
		return err
	}
	for _, w := range []int{1, 2} {
		logf(o.Log, "moat replay auth.log (%d lines), %d worker(s), once", big.lines["auth.log"], w)
		s, err := moatReplay(ctx, o, big, "auth.log", w)
		if err != nil {
			return err
		}
		res.Throughput = append(res.Throughput, summarise("moat", "auth.log", "large", big, w, []sample{s}))
	}
	return nil
}
