package notify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/moatsec/moat/internal/config"
)

// defaultWebhookBody is the message as JSON: host, channel and the alerts
// with their decisions and sampled events.
const defaultWebhookBody = `{{ json . }}`

type webhook struct {
	url     string
	method  string
	headers http.Header
	body    *tmpl
	client  *http.Client
	target  string
}

func newWebhook(n config.Notification) (*webhook, error) {
	body, err := compile("body", n.Body, defaultWebhookBody)
	if err != nil {
		return nil, err
	}
	w := &webhook{url: n.URL, method: strings.ToUpper(n.Method), headers: http.Header{}, body: body, target: maskURL(n.URL)}
	if w.method == "" {
		w.method = http.MethodPost
	}
	for k, v := range n.Headers {
		w.headers.Set(k, v)
	}
	if w.headers.Get("Content-Type") == "" {
		w.headers.Set("Content-Type", "application/json")
	}
	// Redirects are not followed: a webhook URL that moved is a
	// configuration to fix, and following one could send the alert's
	// content somewhere the operator never named.
	w.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return w, nil
}

func (w *webhook) Target() string { return w.target }

func (w *webhook) Check(m *Message) error {
	_, err := w.body.render(m, maxRender)
	return err
}

func (w *webhook) Send(ctx context.Context, m *Message) error {
	body, err := w.body.render(m, maxRender)
	if err != nil {
		return err
	}
	var rd io.Reader
	if w.method != http.MethodGet {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, w.method, w.url, rd)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.target, err)
	}
	req.Header = w.headers.Clone()
	req.Header.Set("User-Agent", "moat-notify")
	resp, err := w.client.Do(req)
	if err != nil {
		// The URL may hold a token (Slack, Telegram): say where with
		// the masked target, never the error's copy of the URL.
		return fmt.Errorf("webhook %s: %w", w.target, unwrapURLError(err))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Drained (bounded) so the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s: status %s: %s", w.target, resp.Status, strings.TrimSpace(string(head)))
	}
	return nil
}

// unwrapURLError drops url.Error's copy of the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// maskURL keeps a URL's scheme, host and port: its path and query often
// are the secret (a Slack hook, a Telegram bot token, an ntfy topic).
func maskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		out += "/***"
	}
	return out
}
