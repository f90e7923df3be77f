package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/version"
)

// outputFormats are the values -o takes; human is the name cscli gives the
// table, accepted so scripts and fingers used to it keep working.
var outputFormats = []string{"table", "human", "json", "raw"}

// conventions applies to the whole command tree what every subcommand
// shares, after the tree is built: --version, the completion command, exit
// code 2 with a suggestion for an unknown subcommand, and completion of
// flag values and arguments.
func (a *app) conventions(root *cobra.Command) {
	root.Version = version.Version
	root.SetVersionTemplate(fmt.Sprintf("moat {{.Version}} (%s, %s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH))
	// Added now rather than by Execute, so the walk below gives it the
	// same handling of unknown subcommands as the others. It keeps the
	// output stream it sees when added.
	root.SetOut(a.stdout)
	root.InitDefaultCompletionCmd()
	walkCommands(root, func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			// Without a RunE cobra prints the help of a group for any
			// argument and exits 0, so a typo looks like success.
			c.Args = cobra.ArbitraryArgs
			c.RunE = unknownSubcommand
		}
		c.Args = usageArgs(c.Args)
	})
	a.registerCompletions(root)
}

// usageArgs makes a failed argument check a usage error (exit 2), cobra's
// own checks (NoArgs, ExactArgs) included, which report plain errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		return nil
	}
	return func(cmd *cobra.Command, args []string) error {
		err := check(cmd, args)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return usageError{err}
	}
}

func walkCommands(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walkCommands(sub, fn)
	}
}

// unknownSubcommand runs for a command group: with no argument it shows the
// group's help, with one it is a usage error naming the closest commands.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	// SuggestionsFor, unlike cobra's own message, takes the distance as
	// set: zero would suggest only prefixes.
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usagef("%s (see %s --help)", msg, cmd.CommandPath())
}

// completionTimeout bounds a completion's call to the daemon: a shell
// waiting on a tab must not hang on a stuck daemon.
const completionTimeout = 2 * time.Second

// registerCompletions completes -o everywhere and, from the daemon when it
// answers, scenario names, alert IDs and bouncer names. The commands are
// found by path so each keeps its own file.
func (a *app) registerCompletions(root *cobra.Command) {
	root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return outputFormats, cobra.ShellCompDirectiveNoFileComp
	})
	find := func(path ...string) *cobra.Command {
		c, rest, err := root.Find(path)
		if err != nil || len(rest) > 0 || c == root {
			return nil
		}
		return c
	}
	for _, p := range [][]string{{"decisions", "list"}, {"decisions", "delete"}, {"alerts", "list"}} {
		if c := find(p...); c != nil && c.Flags().Lookup("scenario") != nil {
			c.RegisterFlagCompletionFunc("scenario", a.completeFromDaemon(scenarioNames))
		}
		if c := find(p...); c != nil && c.Flags().Lookup("origin") != nil {
			c.RegisterFlagCompletionFunc("origin", cobra.FixedCompletions(origins, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	for _, p := range [][]string{{"alerts", "inspect"}, {"notifications", "reinject"}} {
		if c := find(p...); c != nil {
			c.ValidArgsFunction = a.completeFirstArg(alertIDs)
		}
	}
	if c := find("bouncers", "delete"); c != nil {
		c.ValidArgsFunction = a.completeFirstArg(bouncerNames)
	}
}

// origins are the values a decision's origin takes.
var origins = []string{
	string(model.OriginLocal), string(model.OriginCLI), string(model.OriginAPI), string(model.OriginCommunity),
	string(model.OriginList), string(model.OriginMachine), string(model.OriginFleet),
}

// namesFunc reads candidates from the daemon.
type namesFunc func(ctx context.Context, c *api.Client) ([]string, error)

// completeFromDaemon completes with what names returns, or nothing when
// the daemon cannot be reached: a guess would be worse than no answer.
func (a *app) completeFromDaemon(names namesFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		c, err := a.adminClient(cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		all, err := names(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, n := range all {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeFirstArg completes a command's single argument.
func (a *app) completeFirstArg(names namesFunc) cobra.CompletionFunc {
	f := a.completeFromDaemon(names)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return f(cmd, args, toComplete)
	}
}

func scenarioNames(ctx context.Context, c *api.Client) ([]string, error) {
	st, err := c.Status(ctx)
	return st.Scenarios, err
}

// completionAlerts is how many of the newest alerts ID completion offers.
const completionAlerts = 100

func alertIDs(ctx context.Context, c *api.Client) ([]string, error) {
	as, err := c.Alerts(ctx, url.Values{"limit": {strconv.Itoa(completionAlerts)}})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(as))
	for _, al := range as {
		// The description after the tab is shown by zsh and fish; it
		// comes from log lines, so it is escaped like any table cell.
		out = append(out, fmt.Sprintf("%d\t%s %s", al.ID, esc(al.Scenario), esc(al.Value)))
	}
	return out, nil
}

func bouncerNames(ctx context.Context, c *api.Client) ([]string, error) {
	bs, err := c.Bouncers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out, nil
}
