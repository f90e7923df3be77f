package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"

	dto "github.com/prometheus/client_model/go"
)

// ScrapeURL turns metrics.listen into the URL a local client scrapes: a
// wildcard or empty host means the daemon listens on every address, so the
// loopback one is used.
func ScrapeURL(listen string) (string, error) {
	if listen == "" {
		return "", errors.New("metrics.listen is empty: the daemon serves no metrics")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("metrics.listen %q: %w", listen, err)
	}
	if a, err := netip.ParseAddr(host); host == "" || (err == nil && a.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && a.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics", nil
}

// Fetch scrapes url and returns the raw exposition and its parsed families.
// Basic auth credentials may ride in the URL (http://user:pass@host/...).
func Fetch(ctx context.Context, c *http.Client, url string) ([]byte, map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	// Ask for text: the parser reads the text format only.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("scrape metrics (is the daemon running?): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", req.URL.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("scrape %s: %s", req.URL.Redacted(), resp.Status)
	}
	fams, err := ParseText(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("scrape %s: %w", req.URL.Redacted(), err)
	}
	return body, fams, nil
}
