package main

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/enforce/notify"
	"github.com/moatsec/moat/enforce/profile"
	"github.com/moatsec/moat/internal/config"
)

// loadNotifications builds the channels of cfg and checks that every
// channel a profile names exists: both are configuration errors (exit 2)
// at a file and line.
func loadNotifications(cfg config.Config, profiles *profile.Set, log *slog.Logger) (*notify.Manager, error) {
	m, err := notify.FromConfig(&cfg)
	if err != nil {
		return nil, err
	}
	if err := profiles.CheckNotifications(m.Has); err != nil {
		return nil, contentError{err}
	}
	if log != nil {
		l := log.With("component", "notify")
		m.OnError = func(channel string, err error) {
			msg, _, _ := strings.Cut(err.Error(), "\n")
			l.Warn("notification not delivered; bans are not affected", "channel", channel, "err", msg)
		}
	}
	return m, nil
}

func (a *app) notificationsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "notifications",
		Aliases: []string{"notification", "notify"},
		Short:   "List notification channels and send test alerts through them",
		Long: `Notification channels (webhook, email, file) are configured under
notifications: in moat.yaml and chosen by the profiles' notifications: key.
The daemon delivers them off the ban path: a slow or dead channel loses its
own messages, never a ban. See docs/notifications.md.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(a.notificationsListCmd(), a.notificationsTestCmd(), a.notificationsReinjectCmd())
	return cmd
}

func (a *app) notificationsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the channels: kind, target (secrets masked), queue, counters and last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			chans, err := c.Notifications(cmd.Context())
			if err != nil {
				return adminError(err)
			}
			return notificationListing.render(a.stdout, format, chans)
		},
	}
}

var notificationListing = listing[api.NotificationChannel]{
	columns: []column[api.NotificationChannel]{
		{"NAME", func(c api.NotificationChannel) string { return c.Name }},
		{"KIND", func(c api.NotificationChannel) string { return c.Kind }},
		{"TARGET", func(c api.NotificationChannel) string { return c.Target }},
		{"QUEUE", func(c api.NotificationChannel) string { return fmt.Sprintf("%d/%d", c.Queued, c.QueueCap) }},
		{"SENT", func(c api.NotificationChannel) string { return strconv.FormatUint(c.Sent, 10) }},
		{"FAILED", func(c api.NotificationChannel) string { return strconv.FormatUint(c.Failed, 10) }},
		{"DROPPED", func(c api.NotificationChannel) string { return strconv.FormatUint(c.Dropped, 10) }},
		{"LAST SENT", func(c api.NotificationChannel) string { return fmtTime(c.LastSent) }},
		{"LAST ERROR", func(c api.NotificationChannel) string {
			if c.LastError == "" {
				return "-"
			}
			return fmtTime(c.LastErrorAt) + " " + c.LastError
		}},
	},
	raw:   func(c api.NotificationChannel) string { return c.Name },
	empty: "No notification channels (notifications: in moat.yaml).",
}

func (a *app) notificationsTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test NAME",
		Short: "Have the daemon send a sample alert through a channel now",
		Long: `Has the daemon send a sample alert (an SSH brute force from the
documentation address 198.51.100.23, marked as a test) through channel NAME
at once, one attempt bounded by the channel's timeout, and reports the
result: exit code 0 when the far end took it, 1 when it failed.`,
		Example: "  moat notifications test slack",
		Args:    oneName("test"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			res, err := c.TestNotification(cmd.Context(), args[0])
			if err != nil {
				return adminError(err)
			}
			return result{value: res, raw: []string{res.Channel}, text: func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Sample alert sent through %s (%s).\n", res.Channel, res.Took.Round(1e6))
				return err
			}}.render(a.stdout, format)
		},
	}
}

func (a *app) notificationsReinjectCmd() *cobra.Command {
	var channels []string
	cmd := &cobra.Command{
		Use:   "reinject ALERT_ID",
		Short: "Send a stored alert through notification channels again",
		Long: `Queues stored alert ALERT_ID (moat alerts list) with the decisions it
took for the channels given with --channel, else for the channels the
profiles name for it with today's configuration. Delivery runs as for new
alerts: watch moat notifications list for the result.`,
		Example: "  moat notifications reinject 42\n  moat notifications reinject 42 --channel slack",
		Args:    oneName("reinject"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return usagef("alert id %q: want a positive integer", args[0])
			}
			c, format, err := a.adminCall(cmd)
			if err != nil {
				return err
			}
			res, err := c.ReinjectNotification(cmd.Context(), id, channels)
			if err != nil {
				return adminError(err)
			}
			return result{value: res, raw: res.Channels, text: func(w io.Writer) error {
				if len(res.Channels) == 0 {
					_, err := fmt.Fprintf(w, "Alert %d: no profile names a notification channel for it; give --channel.\n", id)
					return err
				}
				_, err := fmt.Fprintf(w, "Alert %d queued for %s.\n", id, strings.Join(res.Channels, ", "))
				return err
			}}.render(a.stdout, format)
		},
	}
	cmd.Flags().StringSliceVar(&channels, "channel", nil, "channel to send through (repeat for several); default: the profiles' channels")
	return cmd
}
