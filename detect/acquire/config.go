package acquire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	KindSyslog  = "syslog"
	KindCommand = "command"
	KindDocker  = "docker"
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

	// syslog: listen_addr, listen_port, protocol, max_message_len, ...
	SyslogConfig `yaml:",inline"`
	// command: the argv of a program whose output is the log.
	CommandConfig `yaml:",inline"`
	// docker: container_name, container_id, docker_host, ...
	DockerConfig `yaml:",inline"`

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

// configError is a problem at file:line of an acquisition file, worded as
// every moat loader words it and matching ErrConfig.
func configError(file string, line int, err error) error {
	if file == "" {
		file = "config"
	}
	return &yamlerr.Error{File: file, Line: line, Msg: err.Error(), Err: errors.Join(ErrConfig, err)}
}

// Validate checks one document; errors name the document's file:line.
func (c *Config) Validate() error {
	if err := c.validate(); err != nil {
		return configError(c.File, c.Line, err)
	}
	return nil
}

// validate tags each error with the key at fault, so that a loader holding
// the document's nodes can name the key's line.
func (c *Config) validate() error {
	bad := func(key []any, format string, a ...any) error {
		return yamlerr.AtKey(fmt.Errorf(format, a...), key...)
	}
	at := func(key ...any) []any { return key }
	// Under use_container_labels each container names its own type.
	if c.Labels["type"] == "" && !(c.Source == KindDocker && c.UseContainerLabels) {
		return bad(at("labels"), "labels.type is required (it selects the parsers)")
	}
	switch c.Mode {
	case "tail", "cat":
	default:
		return bad(at("mode"), "mode %q: want tail or cat", c.Mode)
	}
	switch c.Start {
	case "tail", "head":
	default:
		return bad(at("start"), "start %q: want tail or head", c.Start)
	}
	switch c.Source {
	case KindFile:
		if len(c.Patterns()) == 0 {
			return bad(at("source"), "source file needs filename or filenames")
		}
		for i, p := range c.Patterns() {
			if !filepath.IsAbs(p) {
				return bad(c.patternKey(i), "filename %q is not absolute", p)
			}
			if _, err := filepath.Match(p, ""); err != nil {
				return bad(c.patternKey(i), "filename %q: %v", p, err)
			}
		}
		for i, r := range c.ExcludeRegexps {
			if _, err := regexp.Compile(r); err != nil {
				return bad(at("exclude_regexps", i), "exclude_regexps %q: %v", r, err)
			}
		}
		if len(c.JournalctlFilter) > 0 || c.JournalDir != "" || c.JournalFields != nil {
			return bad(at("source"), "journalctl options on a file source")
		}
	case KindJournal:
		if c.Filename != "" || len(c.Filenames) > 0 {
			return bad(c.patternKey(0), "filenames on a journalctl source")
		}
		for i, m := range c.JournalctlFilter {
			if m != "+" && !validMatch.MatchString(m) {
				return bad(at("journalctl_filter", i), "journalctl_filter %q: want FIELD=value or +", m)
			}
		}
	case KindSyslog:
		if err := c.validateSyslog(); err != nil {
			return err
		}
	case KindCommand:
		if err := c.validateCommand(); err != nil {
			return err
		}
	case KindDocker:
		if err := c.validateDocker(); err != nil {
			return err
		}
	case "":
		return bad(at("source"), "source is required (file, journalctl, syslog, command or docker)")
	default:
		return bad(at("source"), "source %q is not supported (file, journalctl, syslog, command, docker)", c.Source)
	}
	if key, kind := c.foreignKey(); key != "" {
		return bad(at(key), "%s belongs to a %s source, not to a %s source", key, kind, c.Source)
	}
	if c.MaxLineLength < 16 {
		return bad(at("max_line_length"), "max_line_length %d is below 16", c.MaxLineLength)
	}
	if c.PollInterval < 10*time.Millisecond {
		return bad(at("poll_interval"), "poll_interval %s is below 10ms", c.PollInterval)
	}
	if c.ForceInotify && c.PollWithoutInotify {
		return bad(at("poll_without_inotify"), "force_inotify and poll_without_inotify exclude each other")
	}
	return nil
}

// foreignKey names a key set on c that belongs to another kind of source,
// and that kind; "" when there is none. The file and journalctl checks
// above word their own.
func (c *Config) foreignKey() (key, kind string) {
	keys := []struct {
		key, kind string
		set       bool
	}{
		{"filenames", KindFile, c.Filename != "" || len(c.Filenames) > 0},
		{"exclude_regexps", KindFile, len(c.ExcludeRegexps) > 0},
		{"journalctl_filter", KindJournal, len(c.JournalctlFilter) > 0},
		{"journal_dir", KindJournal, c.JournalDir != ""},
		{"listen_addr", KindSyslog, c.ListenAddr != ""},
		{"listen_port", KindSyslog, c.ListenPort != 0},
		{"protocol", KindSyslog, c.Protocol != ""},
		{"max_message_len", KindSyslog, c.MaxMessageLen != 0},
		{"max_connections", KindSyslog, c.MaxConnections != 0},
		{"disable_rfc_parser", KindSyslog, c.DisableRFCParser},
		{"command", KindCommand, len(c.Command) > 0},
		{"container_name", KindDocker, len(c.ContainerName) > 0},
		{"container_id", KindDocker, len(c.ContainerID) > 0},
		{"container_name_regexp", KindDocker, len(c.ContainerNameRegexp) > 0},
		{"container_id_regexp", KindDocker, len(c.ContainerIDRegexp) > 0},
		{"docker_host", KindDocker, c.DockerHost != ""},
		{"check_interval", KindDocker, c.CheckInterval != 0},
		{"use_container_labels", KindDocker, c.UseContainerLabels},
		{"follow_stdout", KindDocker, c.FollowStdout != nil},
		{"follow_stderr", KindDocker, c.FollowStderr != nil},
	}
	for _, k := range keys {
		if k.set && k.kind != c.Source {
			if k.key == "filenames" && c.Filename != "" {
				k.key = "filename"
			}
			return k.key, k.kind
		}
	}
	return "", ""
}

// patternKey is the key path of the i-th of Patterns: filename comes first.
func (c *Config) patternKey(i int) []any {
	if c.Filename != "" {
		if i == 0 {
			return []any{"filename"}
		}
		i--
	}
	return []any{"filenames", i}
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
				return nil, configError(c.File, c.Line, fmt.Errorf("name %q already used at %s", c.Name, prev))
			}
			seen[c.Name] = c.Where()
		}
		all = append(all, cs...)
	}
	return all, nil
}

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
			return nil, decodeError(path, err)
		}
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null") {
			continue // an empty document, as after a trailing ---
		}
		c.File, c.Line = path, n.Content[0].Line
		if c.Name == "" {
			c.Name = defaultName(&c)
		}
		if err := c.validate(); err != nil {
			return nil, configError(path, yamlerr.LineFor(&n, err, c.Line), err)
		}
		out = append(out, c)
	}
	return out, nil
}

// decodeError words a yaml.v3 error as yamlerr does, matching ErrConfig.
func decodeError(path string, err error) error {
	var ye *yamlerr.Error
	if !errors.As(yamlerr.Wrap(path, err), &ye) {
		return configError(path, 0, err)
	}
	ye.Err = errors.Join(ErrConfig, ye.Err)
	return ye
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
	case KindSyslog:
		return "syslog:" + c.SyslogConfig.withDefaults().Protocol + "://" + c.SyslogConfig.address()
	case KindCommand:
		return "command:" + strings.Join(c.Command, " ")
	case KindDocker:
		sel := slices.Concat(c.ContainerName, c.ContainerID, c.ContainerNameRegexp, c.ContainerIDRegexp)
		if c.UseContainerLabels {
			sel = append(sel, "labels")
		}
		return "docker:" + strings.Join(sel, ",") + "@" + c.DockerConfig.socket()
	}
	return c.Source
}
