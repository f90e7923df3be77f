package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce"
)

// verifyReport is the answer of POST /v1/admin/verify.
type verifyReport struct {
	Backends []verifyBackend `json:"backends"`
}

type verifyBackend struct {
	Backend string         `json:"backend"`
	Missing []netip.Prefix `json:"missing"`
	Extra   []netip.Prefix `json:"extra"`
	Expiry  []netip.Prefix `json:"expiry"`
	Error   string         `json:"error,omitempty"`
}

func reportOf(d enforce.Drift) verifyReport {
	var r verifyReport
	for _, b := range d.Backends {
		vb := verifyBackend{Backend: b.Backend, Missing: b.Missing, Extra: b.Extra, Expiry: b.Expiry}
		if b.Err != nil {
			vb.Error = b.Err.Error()
		}
		r.Backends = append(r.Backends, vb)
	}
	return r
}

// logDrift is the reconciler's Verified hook. Every repair is a warning:
// something changed moat's bans behind its back (a manual nft command,
// another firewall tool, a lost map), and the kernel did not enforce what
// moat decided until the repair.
func logDrift(log *slog.Logger) func(enforce.Drift) {
	return func(d enforce.Drift) {
		for _, b := range d.Backends {
			if b.Err != nil {
				log.Warn("kernel verify failed, retrying", "backend", b.Backend, "err", b.Err)
				continue
			}
			if len(b.Missing)+len(b.Extra)+len(b.Expiry) == 0 {
				continue
			}
			log.Warn("kernel drift repaired", "backend", b.Backend,
				"missing", len(b.Missing), "extra", len(b.Extra), "expiry", len(b.Expiry), "sample", driftSample(b))
		}
	}
}

// driftSample names a few of the entries repaired: enough to find the
// culprit, bounded however big the drift.
func driftSample(b enforce.BackendDrift) string {
	const most = 5
	var out []string
	for _, kind := range []struct {
		name string
		ps   []netip.Prefix
	}{{"missing", b.Missing}, {"extra", b.Extra}, {"expiry", b.Expiry}} {
		for _, p := range kind.ps {
			if len(out) == most {
				return strings.Join(out, " ") + " ..."
			}
			out = append(out, kind.name+":"+p.String())
		}
	}
	return strings.Join(out, " ")
}

// serveVerify runs a verify pass on demand: the kernel is compared with the
// decisions and repaired; the differences found are returned.
func (d *daemon) serveVerify(w http.ResponseWriter, r *http.Request) {
	drift, err := d.recon.Verify(r.Context())
	w.Header().Set("Content-Type", "application/json")
	if err != nil && drift.Backends == nil {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(reportOf(drift))
}

func (a *app) verifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Compare the kernel with moat's decisions now, repair what differs and print it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			format, err := a.outputFormat("json")
			if err != nil {
				return err
			}
			rep, err := requestVerify(cmd.Context(), cfg.API.Socket)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BACKEND\tDIFFERENCE\tVALUE")
			total := 0
			for _, b := range rep.Backends {
				for _, kind := range []struct {
					name string
					ps   []netip.Prefix
				}{{"missing (restored)", b.Missing}, {"extra (removed)", b.Extra}, {"expiry (reset)", b.Expiry}} {
					for _, p := range kind.ps {
						fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Backend, kind.name, p)
						total++
					}
				}
				if b.Error != "" {
					fmt.Fprintf(tw, "%s\terror\t%s\n", b.Backend, b.Error)
				}
			}
			fmt.Fprintf(tw, "%d differences\n", total)
			return tw.Flush()
		},
	}
}

func requestVerify(ctx context.Context, socket string) (verifyReport, error) {
	hc := &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://moat/v1/admin/verify", nil)
	if err != nil {
		return verifyReport{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return verifyReport{}, fmt.Errorf("verify: is the daemon running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return verifyReport{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return verifyReport{}, fmt.Errorf("verify: %s: %s", resp.Status, body)
	}
	var rep verifyReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return verifyReport{}, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}
