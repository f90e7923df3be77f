package store

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"io"

	"github.com/moatsec/moat/internal/model"
)

// MaxStoredEvents is how many of an alert's events the store keeps: the
// first and last halves. EventsCount keeps the whole count; a flood's
// alert would otherwise store every event its bucket held.
const MaxStoredEvents = 10

// deflated marks an alert's data as flate-compressed JSON; rows written
// before start with the '{' of plain JSON.
const deflated = 0x01

// encodeAlert is an alert's stored form. Its events repeat the same keys
// and most values, so compressed it takes a fifth of its JSON.
func encodeAlert(a model.Alert) ([]byte, error) {
	if n := len(a.Events); n > MaxStoredEvents {
		events := make([]map[string]string, 0, MaxStoredEvents)
		events = append(events, a.Events[:MaxStoredEvents/2]...)
		a.Events = append(events, a.Events[n-MaxStoredEvents/2:]...)
	}
	js, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteByte(deflated)
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(js); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeAlert reads encodeAlert's form, or the plain JSON of older rows.
func decodeAlert(data []byte, a *model.Alert) error {
	if len(data) > 0 && data[0] == deflated {
		js, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data[1:])), maxAlertJSON+1))
		if err != nil {
			return fmt.Errorf("inflate: %w", err)
		}
		if len(js) > maxAlertJSON {
			return fmt.Errorf("inflates past %d bytes", maxAlertJSON)
		}
		data = js
	}
	return json.Unmarshal(data, a)
}

// maxAlertJSON bounds what a stored alert inflates to.
const maxAlertJSON = 16 << 20
