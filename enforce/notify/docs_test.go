package notify

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/config"
)

// TestDocExamples: the presets in docs/notifications.md load, and each
// webhook body renders to valid JSON unless it says it is plain text.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/notifications.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	for _, part := range strings.Split(string(doc), "```yaml\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		if !strings.HasPrefix(block, "notifications:") {
			continue
		}
		blocks++
		cfg, err := config.Parse("docs/notifications.md", []byte(block))
		if err != nil {
			t.Fatal(err)
		}
		// password_file names a file of the reader's host.
		for name, n := range cfg.Notifications {
			n.SMTP.PasswordFile = ""
			cfg.Notifications[name] = n
		}
		m, err := FromConfig(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range cfg.NotificationNames() {
			w, ok := m.channels[name].send.(*webhook)
			if !ok || w.headers.Get("Content-Type") != "application/json" {
				continue
			}
			msg := newMessage(name, "host1", []item{{a: SampleAlert(testNow), ds: sampleDecisions(testNow)}, {a: SampleAlert(testNow)}})
			body, err := w.body.render(msg, maxRender)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !jsonValid(body) {
				t.Fatalf("%s renders invalid JSON:\n%s", name, body)
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no notifications: example in docs/notifications.md")
	}
}

var testNow = SampleAlert(time.Now()).Stop

func jsonValid(b []byte) bool { return json.Valid(b) }
