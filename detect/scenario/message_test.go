package scenario

import (
	"strings"
	"testing"
	"time"
)

// TestMessageHasNoMonotonicClock: live events carry time.Now's monotonic
// reading, which time.Time.String prints as "m=+6.41"; alert messages reach
// the API, the status page and the CLI, so they must carry wall time only.
func TestMessageHasNoMonotonicClock(t *testing.T) {
	set, err := Load([]string{writeScenario(t, sshLike)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for i := range 8 {
		now := time.Now() // live: wall and monotonic clock
		for _, a := range set.Pour(sshEvent("198.18.0.7", "root"+string(rune('a'+i)), now)) {
			msgs = append(msgs, a.Message)
		}
	}
	if len(msgs) == 0 {
		t.Fatal("no alert: the scenario never overflowed")
	}
	for _, m := range msgs {
		if strings.Contains(m, "m=") {
			t.Errorf("alert message carries the monotonic clock: %q", m)
		}
	}
}
