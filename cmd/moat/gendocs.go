package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// genDocsCmd writes man pages and shell completions from the command tree,
// so the Debian build ships documentation that cannot drift from the CLI.
// Hidden: it is a build step, not something an operator runs.
func (a *app) genDocsCmd() *cobra.Command {
	var manDir, complDir string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write man pages and shell completion files",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manDir == "" && complDir == "" {
				return usagef("gen-docs: give --man DIR, --completion DIR or both")
			}
			root := cmd.Root()
			if manDir != "" {
				if err := genMan(root, manDir); err != nil {
					return err
				}
			}
			if complDir != "" {
				if err := genCompletion(root, complDir); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "directory for the man pages (section 8)")
	cmd.Flags().StringVar(&complDir, "completion", "", "directory for the bash (moat) and zsh (_moat) completion files")
	return cmd
}

func genMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	// A fixed date keeps the pages byte-identical between builds of the
	// same source (reproducible builds); SOURCE_DATE_EPOCH wins when the
	// package build sets it.
	date := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var epoch int64
		if _, err := fmt.Sscan(s, &epoch); err != nil {
			return usagef("SOURCE_DATE_EPOCH %q: %v", s, err)
		}
		date = time.Unix(epoch, 0).UTC()
	}
	root.DisableAutoGenTag = true
	// The completion command is for package builds and shell setup, which
	// the packaged completion files cover: no page for it and its shells.
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Hidden = true
		}
	}
	hdr := &doc.GenManHeader{
		Title:   "MOAT",
		Section: "8",
		Source:  "moat",
		Manual:  "moat manual",
		Date:    &date,
	}
	if err := doc.GenManTree(root, hdr, dir); err != nil {
		return fmt.Errorf("man pages in %s: %w", dir, err)
	}
	return nil
}

func genCompletion(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("completion: %w", err)
	}
	// The names are where bash-completion and zsh look them up:
	// /usr/share/bash-completion/completions/moat and
	// /usr/share/zsh/vendor-completions/_moat.
	if err := root.GenBashCompletionFileV2(filepath.Join(dir, "moat"), true); err != nil {
		return fmt.Errorf("bash completion: %w", err)
	}
	if err := root.GenZshCompletionFile(filepath.Join(dir, "_moat")); err != nil {
		return fmt.Errorf("zsh completion: %w", err)
	}
	return nil
}
