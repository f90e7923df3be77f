// Command moat is the moat daemon and its command-line interface.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/packaging"
)

// Exit codes scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// app carries the global flags and streams every subcommand shares.
type app struct {
	configPath string
	logLevel   string
	level      *slog.LevelVar
	output     string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

// usageError marks errors that are the caller's to fix (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// SIGINT and SIGTERM cancel the context: the daemon stops cleanly and
	// leaves its bans in the kernel.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	// One line: expression compilers add a caret diagram below the message,
	// which a log line or a script does not want.
	msg, _, _ := strings.Cut(err.Error(), "\n")
	fmt.Fprintf(stderr, "moat: %s\n", esc(msg))
	var ue usageError
	var ce *config.Error
	var cte contentError
	if errors.As(err, &ue) || errors.As(err, &ce) || errors.As(err, &cte) {
		return exitUsage
	}
	return exitFailure
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "moat",
		Short:         "moat detects attacks in logs and bans attackers in the kernel",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVarP(&a.configPath, "config", "c", config.DefaultPath, "configuration file")
	pf.StringVar(&a.logLevel, "log-level", "", "log level: debug, info, warn, error (default from the configuration)")
	pf.StringVarP(&a.output, "output", "o", "", "output format: table (alias human), json or raw (default table on a terminal, json otherwise where it applies)")
	root.AddCommand(
		a.runCmd(),
		a.replayCmd(),
		a.configCmd(),
		a.cleanupCmd(),
		a.versionCmd(),
		a.hubCmd(),
		a.explainCmd(),
		a.verifyCmd(),
		a.genDocsCmd(),
		a.metricsCmd(),
		a.importCmd(),
		a.setupCmd(),
		// admin commands that talk to the daemon over api.socket:
		a.decisionsCmd(),
		a.alertsCmd(),
		a.bouncersCmd(),
		a.machinesCmd(),
		a.allowlistCmd(),
		a.notificationsCmd(),
		a.actionsCmd(),
		a.statusCmd(),
		a.communityCmd(),
		a.scenariosCmd(),
		a.supportCmd(),
	)
	a.conventions(root)
	return root
}

// loadConfig reads the configuration. The default path may be missing, in
// which case the embedded default applies; an explicit --config must exist.
func (a *app) loadConfig(cmd *cobra.Command) (config.Config, error) {
	cfg, err := config.Load(a.configPath)
	if errors.Is(err, config.ErrNotExist) && !cmd.Flags().Changed("config") {
		cfg, err = config.Parse("(built-in default)", packaging.DefaultConfig)
		cfg.Source = ""
	}
	if err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// outputFormat resolves -o: table on a terminal, else def.
func (a *app) outputFormat(def string) (string, error) {
	switch a.output {
	case "":
		if f, ok := a.stdout.(*os.File); ok && isTerminal(f) {
			return "table", nil
		}
		return def, nil
	case "table", "json", "raw":
		return a.output, nil
	case "human":
		return "table", nil
	}
	return "", usagef("-o %q: want table (or human), json or raw", a.output)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
