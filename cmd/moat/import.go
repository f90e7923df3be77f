package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
)

// readImport reads the input, at most maxImportBytes of it.
func (a *app) readImport(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = a.stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, usagef("%v", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxImportBytes {
		return nil, usagef("%s: larger than %d MiB; split it", name, maxImportBytes>>20)
	}
	return data, nil
}

func (a *app) decisionsImportCmd() *cobra.Command {
	var input, format string
	var def importDefaults
	var batch int
	cmd := &cobra.Command{
		Use:   "import [FILE|-]",
		Short: "Add many decisions from a file or stdin",
		Long: `Add decisions in bulk from FILE, or stdin with - (or no FILE). The input is
one of:
  values  one address or CIDR range a line; # comments and blank lines are
          skipped, and text after the value is ignored
  csv     a header line naming any of value, duration, reason, scope, type,
          scenario, origin (cscli decisions import's format)
  json    an array of objects with the same keys
The format comes from --format, else the file's extension, else the content.
Columns a line leaves empty take --duration, --reason and --type. The origin
is always cli. Decisions are sent to the daemon in batches; allowlisted,
protected and malformed entries are skipped, each reported with its line,
and the rest imported. The exit code is 0 once the daemon has the batches,
whatever was skipped: the summary (or -o json) says what.`,
		Example: "  moat decisions import blocklist.txt --duration 24h --reason 'partner list'\n  moat decisions import decisions.csv\n  curl -s https://example.org/list.txt | moat decisions import - --format values",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("import takes one FILE (or - for stdin)")
			}
			return nil
		},
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			name := input
			switch {
			case len(args) == 1 && input != "":
				return usagef("give FILE or --input, not both")
			case len(args) == 1:
				name = args[0]
			case name == "":
				name = "-"
			}
			if batch < 1 || batch > api.MaxImportPerRequest {
				return usagef("--batch %d: want 1 to %d", batch, api.MaxImportPerRequest)
			}
			data, err := a.readImport(name)
			if err != nil {
				return err
			}
			if format == "" {
				format = detectFormat(name, data)
			}
			label := name
			if name == "-" {
				label = "(stdin)"
			}
			in, err := parseImport(label, data, format, def)
			if err != nil {
				return err
			}
			if len(in.entries) == 0 && len(in.skipped) == 0 {
				return usagef("%s: no decisions in the input", label)
			}
			c, err := a.adminClient(cmd)
			if err != nil {
				return err
			}
			res := api.ImportResponse{Skipped: in.skipped}
			for es := in.entries; len(es) > 0; {
				n := min(batch, len(es))
				r, err := c.ImportDecisions(cmd.Context(), es[:n], true)
				if err != nil {
					if res.Imported > 0 {
						fmt.Fprintf(a.stderr, "moat: %d decision(s) imported before the failure\n", res.Imported)
					}
					return adminError(err)
				}
				res.Imported += r.Imported
				res.Skipped = append(res.Skipped, r.Skipped...)
				es = es[n:]
			}
			return writeImportOut(a.stdout, out, res)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&input, "input", "i", "", "input file, - for stdin (as cscli's -i)")
	fl.StringVar(&format, "format", "", "input format: values, csv or json (default from the extension or the content)")
	fl.StringVarP(&def.duration, "duration", "d", "4h", "duration of the decisions whose line gives none")
	fl.StringVarP(&def.reason, "reason", "R", "manual", "reason of the decisions whose line gives none")
	fl.StringVarP(&def.typ, "type", "t", "ban", "type of the decisions whose line gives none")
	fl.StringVar(&def.scope, "scope", "", "scope of the lines that give none: ip or range (default from each value)")
	fl.IntVar(&batch, "batch", 1000, "decisions sent to the daemon per request")
	cmd.RegisterFlagCompletionFunc("format", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{"values", "csv", "json"}, cobra.ShellCompDirectiveNoFileComp
	})
	return cmd
}

// maxSkippedShown bounds the skipped lines a table lists; -o json has all.
const maxSkippedShown = 20

// writeImportOut prints the summary: -o raw the skipped values, one a
// line, for a script to look at or retry.
func writeImportOut(w io.Writer, format string, res api.ImportResponse) error {
	raw := make([]string, len(res.Skipped))
	for i, s := range res.Skipped {
		raw[i] = s.Value
	}
	return result{value: res, raw: raw, text: func(w io.Writer) error {
		if _, err := fmt.Fprintf(w, "%d decision(s) imported, %d skipped.\n", res.Imported, len(res.Skipped)); err != nil {
			return err
		}
		for i, s := range res.Skipped {
			if i == maxSkippedShown {
				_, err := fmt.Fprintf(w, "  ... and %d more (-o json lists them all)\n", len(res.Skipped)-i)
				return err
			}
			where := "-"
			if s.Line > 0 {
				where = fmt.Sprintf("line %d", s.Line)
			}
			if _, err := fmt.Fprintf(w, "  %s: %s: %s\n", where, esc(s.Value), esc(s.Reason)); err != nil {
				return err
			}
		}
		return nil
	}}.render(w, format)
}
