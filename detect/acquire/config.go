package acquire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/moatsec/moat/internal/yamlerr"
)

// Source kinds accepted in "source:".
const (
	KindFile    = "file"
	KindJournal = "journalctl"
)

// Defaults filled in before decoding.
const (
	DefaultMaxLineLength = 64 * 1024
	DefaultPollInterval  = time.Second
	DefaultStateDir      = "/var/lib/moat/acquire"
	// StateInterval is how often a source writes its position while lines
	// flow; after a crash at most this much is read again.
	StateInterval = 200 * time.Millisecond
)

// ErrConfig is the sentinel every configuration error matches with errors.Is.
var ErrConfig = errors.New("acquisition config")

// Config is one acquisition document, in the CrowdSec acquis.yaml shape so
// existing files drop in: source plus filenames or journalctl_filter, and
// labels whose "type" selects parsers.
type Config struct {
	Source string `yaml:"source"`
	// Name identifies the source in stats and names its state file; it
	// defaults to one derived from the inputs.
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
	// Mode "tail" (default) follows; "cat" reads what is there and stops.
	Mode string `yaml:"mode"`
	// Start decides where a first start (no saved position) begins:
	// "tail" (default) at the end, "head" at the beginning. Files that
	// appear after the first start are always read from their beginning.
	Start string `yaml:"start"`

	// file
	Filename       string   `yaml:"filename"`
	Filenames      []string `yaml:"filenames"`
	ExcludeRegexps []string `yaml:"exclude_regexps"`
	MaxLineLength  int      `yaml:"max_line_length"`
	// PollInterval is the poll period without inotify and the safety
	// re-scan (globs, missed events) with it.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ForceInotify makes a failing inotify watch an error instead of a
	// silent fall back to polling.
	ForceInotify bool `yaml:"force_inotify"`
	// PollWithoutInotify polls only (network filesystems, FUSE).
	PollWithoutInotify bool `yaml:"poll_without_inotify"`

	// journalctl
	JournalctlFilter []string `yaml:"journalctl_filter"`
	// JournalFields are the journal fields copied into Line.Labels besides
	// the acquisition labels; nil means DefaultJournalFields.
	JournalFields []string `yaml:"journal_fields"`
	// JournalDir reads a journal directory instead of the system journal.
	JournalDir string `yaml:"journal_dir"`

	// Accepted for CrowdSec compatibility; moat has no per-source log level.
	LogLevel string `yaml:"log_level"`

	// File and Line say where the document came from, for messages.
	File string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Where names the document's origin as file:line.
func (c *Config) Where() string {
	if c.File == "" {
		return "config"
	}
	return c.File + ":" + strconv.Itoa(c.Line)
}

// Patterns returns the configured file globs, filename first.
func (c *Config) Patterns() []string {
	var p []string
	if c.Filename != "" {
		p = append(p, c.Filename)
	}
	return append(p, c.Filenames...)
}

// matches reports whether path is one of the files the patterns name.
func (c *Config) matches(path string) bool {
	for _, pat := range c.Patterns() {
		if ok, _ := filepath.Match(pat, path); ok {
			return true
		}
	}
	return false
}

func defaultConfig() Config {
	return Config{
		MaxLineLength: DefaultMaxLineLength,
		PollInterval:  DefaultPollInterval,
		Mode:          "tail",
		Start:         "tail",
	}
}

var validMatch = regexp.MustCompile(`^[A-Z0-9_]+=`)

// Validate checks one document; errors name the document's file:line.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s", c.Where(), ErrConfig, fmt.Sprintf(format, a...))
	}
	if c.Labels["type"] == "" {
		return bad("labels.type is required (it selects the parsers)")
	}
	switch c.Mode {
	case "tail", "cat":
	default:
		return bad("mode %q: want tail or cat", c.Mode)
	}
	switch c.Start {
	case "tail", "head":
	default:
		return bad("start %q: want tail or head", c.Start)
	}
	switch c.Source {
	case KindFile:
		if len(c.Patterns()) == 0 {
			return bad("source file needs filename or filenames")
		}
		for _, p := range c.Patterns() {
			if !filepath.IsAbs(p) {
				return bad("filename %q is not absolute", p)
			}
			if _, err := filepath.Match(p, ""); err != nil {
				return bad("filename %q: %v", p, err)
			}
		}
		for _, r := range c.ExcludeRegexps {
			if _, err := regexp.Compile(r); err != nil {
				return bad("exclude_regexps %q: %v", r, err)
			}
		}
		if len(c.JournalctlFilter) > 0 || c.JournalDir != "" || c.JournalFields != nil {
			return bad("journalctl options on a file source")
		}
	case KindJournal:
		if c.Filename != "" || len(c.Filenames) > 0 {
			return bad("filenames on a journalctl source")
		}
		for _, m := range c.JournalctlFilter {
			if m != "+" && !validMatch.MatchString(m) {
				return bad("journalctl_filter %q: want FIELD=value or +", m)
			}
		}
	case "":
		return bad("source is required (file or journalctl)")
	default:
		return bad("source %q is not supported (file, journalctl)", c.Source)
	}
	if c.MaxLineLength < 16 {
		return bad("max_line_length %d is below 16", c.MaxLineLength)
	}
	if c.PollInterval < 10*time.Millisecond {
		return bad("poll_interval %s is below 10ms", c.PollInterval)
	}
	if c.ForceInotify && c.PollWithoutInotify {
		return bad("force_inotify and poll_without_inotify exclude each other")
	}
	return nil
}

// LoadConfigDir loads every *.yaml and *.yml file in dir, in name order.
func LoadConfigDir(dir string) ([]Config, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read acquisition dir: %w", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		if strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml") {
			names = append(names, filepath.Join(dir, n))
		}
	}
	sort.Strings(names)
	var all []Config
	seen := map[string]string{}
	for _, p := range names {
		data, err := yamlerr.ReadFile(p, yamlerr.MaxConfigFile)
		if err != nil {
			return nil, fmt.Errorf("read acquisition file: %w", err)
		}
		cs, err := LoadConfig(p, data)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			if prev, ok := seen[c.Name]; ok {
				return nil, fmt.Errorf("%s: %w: name %q already used at %s", c.Where(), ErrConfig, c.Name, prev)
			}
			seen[c.Name] = c.Where()
		}
		all = append(all, cs...)
	}
	return all, nil
}

var yamlLine = regexp.MustCompile(`(?:yaml: )?line (\d+): `)

// LoadConfig decodes the YAML documents in data (read from path, which is
// used in messages only). Unknown keys are errors.
func LoadConfig(path string, data []byte) ([]Config, error) {
	// Two decoders walk the same documents: one into nodes for the line a
	// document starts at, one strict into the struct (node.Decode would drop
	// KnownFields).
	nodes := yaml.NewDecoder(bytes.NewReader(data))
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	var out []Config
	for {
		var n yaml.Node
		nerr := nodes.Decode(&n)
		c := defaultConfig()
		err := strict.Decode(&c)
		if errors.Is(err, io.EOF) || errors.Is(nerr, io.EOF) {
			break
		}
		if err == nil {
			err = nerr
		}
		if err != nil {
			// yaml.v3 says "yaml: line N: ..." or, for type errors, a list
			// of "line N: ..."; name the file and the first line.
			msg := strings.ReplaceAll(err.Error(), "yaml: unmarshal errors:\n  ", "")
			line := "1"
			if m := yamlLine.FindStringSubmatch(msg); m != nil {
				line = m[1]
				msg = yamlLine.ReplaceAllString(msg, "")
			}
			return nil, fmt.Errorf("%s:%s: %w: %s", path, line, ErrConfig, strings.TrimPrefix(msg, "yaml: "))
		}
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null") {
			continue // an empty document, as after a trailing ---
		}
		c.File, c.Line = path, n.Content[0].Line
		if c.Name == "" {
			c.Name = defaultName(&c)
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func defaultName(c *Config) string {
	switch c.Source {
	case KindFile:
		return "file:" + strings.Join(c.Patterns(), ",")
	case KindJournal:
		n := "journalctl:" + strings.Join(c.JournalctlFilter, ",")
		if c.JournalDir != "" {
			n += "@" + c.JournalDir
		}
		return n
	}
	return c.Source
}
