package parse

import (
	"github.com/moatsec/moat/detect"
)

// OverflowEvent is what postoverflow expressions address as evt: a
// detect.Event whose Overflow is set, named as CrowdSec names it.
type OverflowEvent struct {
	detect.Event
}

// GetType returns "overflow".
func (o *OverflowEvent) GetType() string { return "overflow" }

// The overflow view types live in detect, where an event poured again
// into the scenarios carries them too; these names are the ones
// postoverflow code and hub asserts were written against.
type (
	// Overflow is a bucket overflow as hub expressions and asserts see it.
	Overflow = detect.Overflow
	// Source is one overflow source (CrowdSec's models.Source).
	Source = detect.OverflowSource
	// AlertView is the alert of an overflow.
	AlertView = detect.AlertView
	// EventView is the meta of one event of an alert.
	EventView = detect.AlertEvent
)
