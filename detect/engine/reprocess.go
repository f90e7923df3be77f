package engine

import (
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/scenario"
)

// maxReprocessDepth bounds how many times an overflow's consequences are
// poured again: the overflow of a log-fed bucket is depth 1, an overflow
// it causes depth 2, and so on. CrowdSec has no bound, and a scenario that
// takes its own overflows (a trigger without blackhole) feeds itself
// forever there; here the overflow past the bound is still an alert, it
// is only not poured again, and Stats.ReprocessDropped counts it. Hub
// chains are one level deep (ban-defcon-drop_range takes the overflows of
// brute-force scenarios).
const maxReprocessDepth = 4

// postprocess runs the postoverflows on ovs, then pours the overflows of
// reprocess scenarios into the scenarios again, and returns ovs followed
// by the overflows that caused, level by level.
func (e *Engine) postprocess(ovs []scenario.Overflow) []Overflow {
	return e.again(e.postoverflow(ovs))
}

// again pours each overflow of out that asks for it (Overflow.Reprocess,
// after the postoverflows: a whitelisted overflow is not in out) into the
// scenarios, as CrowdSec feeds it back to its buckets, and appends the
// overflows that caused, then pours those that ask for it, and so on up to
// maxReprocessDepth. It runs where the buckets are filled, on the calling
// goroutine of Process, Tick, Flush and Run: the events it pours are
// matched there, in order, so the result is the same with or without
// parse workers.
func (e *Engine) again(out []Overflow) []Overflow {
	level := out
	for depth := 1; len(level) > 0; depth++ {
		var next []Overflow
		for _, o := range level {
			if !o.reprocess || len(o.Alerts) == 0 {
				continue
			}
			if depth > maxReprocessDepth {
				e.reprocessDropped.Add(1)
				continue
			}
			e.reprocessed.Add(1)
			if !e.set.TakesOverflows() {
				// No scenario takes it back (ssh-bf asks for it, with
				// nothing that reads overflows loaded): the pour is
				// known to change nothing, and it has no view.
				continue
			}
			evt := reprocessEvent(o)
			evt.Hold()
			next = append(next, e.postoverflow(e.set.PourOverflows(evt))...)
			if evt.Release() {
				e.recycle(evt)
			}
		}
		out = append(out, next...)
		level = next
	}
	return out
}

// reprocessEvent is the event an overflow becomes when poured again:
// evt.Overflow is the overflow as the postoverflows left it (CrowdSec's
// OVFLW event), its time is the overflow's, and its meta holds only the
// alert's source (source_ip, SourceRange), so that the filters of log
// scenarios, which test log types and services, do not take it.
func reprocessEvent(o Overflow) *detect.Event {
	a := o.Alerts[0]
	v := o.View
	evt := detect.NewEventSized(detect.Line{ReadAt: a.ReadAt, Process: true}, 0, 2)
	evt.Overflow = v.Overflow
	evt.Time = v.Time
	// CrowdSec stamps the overflow event with the overflow time; a replay
	// pours only events that have one (see scenario.Options.Replay).
	evt.MarshaledTime = v.Time.UTC().Format(time.RFC3339Nano)
	if src := v.Overflow.Alert.Source; src != nil {
		if src.IP != "" {
			evt.Meta["source_ip"] = src.IP
		}
		if src.Range != "" {
			evt.Meta["SourceRange"] = src.Range
		}
	}
	return evt
}
