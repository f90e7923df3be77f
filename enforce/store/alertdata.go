package store

import (
	"encoding/json"
	"fmt"

	"github.com/moatsec/moat/internal/model"
)

// MaxStoredEvents is how many of an alert's events the store keeps: the
// first and last halves. EventsCount keeps the whole count; a flood's
// alert would otherwise store every event its bucket held.
const MaxStoredEvents = 10

// encodeAlert is an alert's stored form: its JSON with the events
// sampled. Not compressed: compressing each alert as it is stored (a
// fifth of the bytes) cost the CPU that an attack burst's bans share, and
// moved the journald-to-kernel p90 from under 1 ms to 2-5 ms on two cores;
// retention and max_alerts bound the file instead.
func encodeAlert(a model.Alert) ([]byte, error) {
	if n := len(a.Events); n > MaxStoredEvents {
		events := make([]map[string]string, 0, MaxStoredEvents)
		events = append(events, a.Events[:MaxStoredEvents/2]...)
		a.Events = append(events, a.Events[n-MaxStoredEvents/2:]...)
	}
	return json.Marshal(a)
}

// decodeAlert reads encodeAlert's form.
func decodeAlert(data []byte, a *model.Alert) error {
	if len(data) > maxAlertJSON {
		return fmt.Errorf("stored alert of %d bytes, over %d", len(data), maxAlertJSON)
	}
	return json.Unmarshal(data, a)
}

// maxAlertJSON bounds what a stored alert inflates to.
const maxAlertJSON = 16 << 20
