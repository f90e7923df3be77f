package main

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/internal/metrics"
)

func (a *app) metricsCmd() *cobra.Command {
	var url string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Show the daemon's metrics as tables",
		Long: `Scrape the daemon's /metrics at metrics.listen and print sources, parsers,
scenarios, decisions, kernel sets and the detection-to-kernel latency.
-o json prints the same figures as JSON, -o raw the exposition unchanged.
With basic auth or TLS on the metrics address, pass --url, e.g.
https://user:password@127.0.0.1:9641/metrics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			if url == "" {
				cfg, err := a.loadConfig(cmd)
				if err != nil {
					return err
				}
				if url, err = scrapeURL(cfg.Metrics.Listen); err != nil {
					return usagef("%v", err)
				}
			}
			raw, fams, err := fetchMetrics(cmd.Context(), &http.Client{Timeout: timeout}, url)
			if err != nil {
				return err
			}
			switch format {
			case "raw":
				_, err = a.stdout.Write(raw)
				return err
			case "json":
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(metrics.Summarize(fams))
			}
			return writeMetricsText(a.stdout, metrics.Summarize(fams))
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "metrics URL (default http://<metrics.listen>/metrics)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "scrape timeout")
	return cmd
}
