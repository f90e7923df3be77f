package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/moatsec/moat/enforce/notify"
)

// NotificationChannel is a notification channel as moat notifications
// list shows it: kind, target (secrets masked), queue and counters.
type NotificationChannel = notify.Stats

// Notifier is what the notification endpoints need of enforce/notify.
type Notifier interface {
	Stats() []notify.Stats
	Test(ctx context.Context, name string) error
}

// NotificationTest is the answer to a test send.
type NotificationTest struct {
	Channel string `json:"channel"`
	Sent    bool   `json:"sent"`
	// Took is how long the attempt took.
	Took time.Duration `json:"took_ns"`
}

// testSendLimit bounds a test send beyond the channel's own timeout: the
// CLI waits for it.
const testSendLimit = 2 * time.Minute

// NotifyAdminRoutes adds the notification endpoints to the admin mux:
// GET /v1/admin/notifications and POST /v1/admin/notifications/{name}/test.
func NotifyAdminRoutes(mux *http.ServeMux, n Notifier) {
	mux.Handle("GET /v1/admin/notifications", handle(func(w http.ResponseWriter, _ *http.Request) error {
		out := n.Stats()
		if out == nil {
			out = []notify.Stats{}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}))
	mux.Handle("POST /v1/admin/notifications/{name}/test", handle(func(w http.ResponseWriter, r *http.Request) error {
		name := r.PathValue("name")
		ctx, cancel := context.WithTimeout(r.Context(), testSendLimit)
		defer cancel()
		start := time.Now()
		err := n.Test(ctx, name)
		switch {
		case errors.Is(err, notify.ErrUnknownChannel):
			return &apiError{http.StatusNotFound, err.Error()}
		case err != nil:
			// The daemon works; the channel's far end does not.
			return &apiError{http.StatusBadGateway, "notification " + name + ": " + err.Error()}
		}
		writeJSON(w, http.StatusOK, NotificationTest{Channel: name, Sent: true, Took: time.Since(start)})
		return nil
	}))
}

// Notifications lists the notification channels.
func (c *Client) Notifications(ctx context.Context) ([]NotificationChannel, error) {
	var out []NotificationChannel
	err := c.do(ctx, http.MethodGet, "/v1/admin/notifications", nil, nil, &out)
	return out, err
}

// TestNotification has the daemon send a sample alert through a channel.
func (c *Client) TestNotification(ctx context.Context, name string) (NotificationTest, error) {
	var out NotificationTest
	err := c.do(ctx, http.MethodPost, "/v1/admin/notifications/"+url.PathEscape(name)+"/test", nil, nil, &out)
	return out, err
}

// Reinjector sends a stored alert through notification channels again:
// the named ones, else those of the profiles that match it today.
type Reinjector interface {
	Reinject(ctx context.Context, alertID int64, channels []string) ([]string, error)
}

// NotificationReinject is the answer to a reinject: the channels the
// alert was queued for (delivery happens off the request, as for alerts).
type NotificationReinject struct {
	AlertID  int64    `json:"alert_id"`
	Channels []string `json:"channels"`
}

// ReinjectRoute adds POST /v1/admin/alerts/{id}/notify, with
// optional repeated channel= parameters.
func ReinjectRoute(mux *http.ServeMux, re Reinjector) {
	mux.Handle("POST /v1/admin/alerts/{id}/notify", handle(func(w http.ResponseWriter, r *http.Request) error {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			return badRequest("alert id %q: want a positive integer", r.PathValue("id"))
		}
		chans, err := re.Reinject(r.Context(), id, r.URL.Query()["channel"])
		if errors.Is(err, notify.ErrUnknownChannel) {
			return &apiError{http.StatusNotFound, err.Error()}
		}
		if err != nil {
			return err
		}
		if chans == nil {
			chans = []string{}
		}
		writeJSON(w, http.StatusOK, NotificationReinject{AlertID: id, Channels: chans})
		return nil
	}))
}

// ReinjectNotification has the daemon send stored alert id through
// channels again (none: the channels its profiles name).
func (c *Client) ReinjectNotification(ctx context.Context, id int64, channels []string) (NotificationReinject, error) {
	var out NotificationReinject
	q := url.Values{"channel": channels}
	err := c.do(ctx, http.MethodPost, "/v1/admin/alerts/"+strconv.FormatInt(id, 10)+"/notify", q, nil, &out)
	return out, err
}
