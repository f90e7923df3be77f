package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/internal/config"
)

func (a *app) supportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "support",
		Short: "Gather what a bug report needs",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.supportDumpCmd())
	return cmd
}

func (a *app) supportDumpCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "dump",
		Short: "Write a tar.gz of versions, redacted configuration, hub, sources, metrics, recent errors and the daemon's goroutines",
		Long: `Writes one tar.gz for a bug report: versions (moat, Go, kernel), the
effective configuration with every secret replaced by REDACTED (passwords,
tokens, API keys, webhook URLs past their host, headers, action arguments
and environment), the hub items loaded and where from, the sources with
their saved positions, the daemon's status, its metrics, its recent
warnings and errors (else moat.service's journal) and a dump of its
goroutines. Secrets the configuration holds or names in files are also
scrubbed from every file of the archive. With the daemon down the rest is
still written, and README.txt says what could not be collected and why.
-o raw prints the archive's path.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := a.outputFormat("table")
			if err != nil {
				return err
			}
			if file == "" {
				host, _ := os.Hostname()
				file = fmt.Sprintf("moat-support-%s-%s.tar.gz", safeName(host), time.Now().UTC().Format("20060102-150405"))
			}
			b := a.collectSupport(cmd)
			if err := b.writeFile(file); err != nil {
				return err
			}
			return result{
				value: b.summary(file),
				raw:   []string{file},
				text:  func(w io.Writer) error { return b.writeSummary(w, file) },
			}.render(a.stdout, format)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "archive to write (default moat-support-HOST-TIME.tar.gz here); never overwritten")
	return cmd
}

// safeName keeps a host name fit for a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// bundle is a support archive being gathered.
type bundle struct {
	files []bundleFile
	// missing says, per file, why it could not be collected.
	missing []bundleMissing
	// scrub are secret values to replace wherever they appear.
	scrub []string
}

type bundleFile struct {
	name string
	data []byte
}

type bundleMissing struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

func (b *bundle) add(name string, data []byte) {
	b.files = append(b.files, bundleFile{name, data})
}

func (b *bundle) miss(name string, err error) {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	b.missing = append(b.missing, bundleMissing{name, msg})
}

// minScrub is the shortest secret scrubbed from free text: a shorter
// one would turn common words of logs into REDACTED (it still never
// appears in config.yaml, which is redacted by key).
const minScrub = 6

// scrubbed replaces every known secret in data.
func (b *bundle) scrubbed(data []byte) []byte {
	s := string(data)
	for _, sec := range b.scrub {
		s = strings.ReplaceAll(s, sec, config.Redacted)
	}
	return []byte(s)
}

// addSecrets adds values to scrub, longest first so that a secret that
// contains another goes whole.
func (b *bundle) addSecrets(vals ...string) {
	for _, v := range vals {
		if len(v) >= minScrub && !slices.Contains(b.scrub, v) {
			b.scrub = append(b.scrub, v)
		}
	}
	slices.SortFunc(b.scrub, func(x, y string) int { return len(y) - len(x) })
}

// writeFile writes the archive to path, created 0600 (it describes the
// host) and never over an existing file.
func (b *bundle) writeFile(path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("support archive: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("support archive %s: %w", path, cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	return b.write(f, strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".gz"), ".tar"))
}

// write writes the archive, every file under dir/, README.txt first.
func (b *bundle) write(w io.Writer, dir string) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	now := time.Now()
	files := append([]bundleFile{{"README.txt", b.readme()}}, b.files...)
	for _, f := range files {
		data := b.scrubbed(f.data)
		hdr := &tar.Header{Name: dir + "/" + f.name, Mode: 0o600, Size: int64(len(data)), ModTime: now, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("support archive: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("support archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("support archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("support archive: %w", err)
	}
	return nil
}

// supportFiles describes each file an archive may hold.
var supportFiles = [][2]string{
	{"versions.txt", "moat, Go, OS, kernel; the daemon's version and start time"},
	{"config.yaml", "the effective configuration, secrets replaced by REDACTED"},
	{"status.json", "the daemon's status (moat status -o json)"},
	{"hub.json", "hub items loaded and the layer each comes from (moat hub list --loaded)"},
	{"sources.json", "the configured sources, their saved positions and what the daemon read"},
	{"metrics.txt", "the daemon's Prometheus metrics"},
	{"logs.txt", "the daemon's latest warnings and errors, else moat.service's journal"},
	{"goroutines.txt", "every goroutine of the daemon, as Go prints a stack dump"},
}

func (b *bundle) readme() []byte {
	var s strings.Builder
	fmt.Fprintf(&s, "moat support dump, %s\n\nFiles:\n", time.Now().UTC().Format(time.RFC3339))
	for _, f := range supportFiles {
		if b.has(f[0]) {
			fmt.Fprintf(&s, "  %-15s %s\n", f[0], f[1])
		}
	}
	if len(b.missing) > 0 {
		s.WriteString("\nNot collected:\n")
		for _, m := range b.missing {
			fmt.Fprintf(&s, "  %-15s %s\n", m.File, m.Reason)
		}
	}
	s.WriteString("\nSecrets of the configuration (and of the files it names for them) are\nreplaced by " + config.Redacted + " in every file.\n")
	return []byte(s.String())
}

func (b *bundle) has(name string) bool {
	return slices.ContainsFunc(b.files, func(f bundleFile) bool { return f.name == name })
}

// supportSummary is what -o json prints.
type supportSummary struct {
	File         string          `json:"file"`
	Files        []string        `json:"files"`
	NotCollected []bundleMissing `json:"not_collected"`
}

func (b *bundle) summary(path string) supportSummary {
	out := supportSummary{File: path, Files: []string{"README.txt"}, NotCollected: append([]bundleMissing{}, b.missing...)}
	for _, f := range b.files {
		out.Files = append(out.Files, f.name)
	}
	return out
}

func (b *bundle) writeSummary(w io.Writer, path string) error {
	var s strings.Builder
	fmt.Fprintf(&s, "Wrote %s (%d files).\n", esc(path), len(b.files)+1)
	if len(b.missing) > 0 {
		s.WriteString("Not collected:\n")
		for _, m := range b.missing {
			fmt.Fprintf(&s, "  %s: %s\n", m.File, esc(m.Reason))
		}
	}
	_, err := io.WriteString(w, s.String())
	return err
}

// errNoDaemon is why the daemon's files are missing when it is down.
var errNoDaemon = errors.New("the daemon did not answer")
