// Package scenario runs CrowdSec-hub scenarios: it pours parsed events
// into leaky, trigger, counter, conditional and bayesian buckets keyed by
// scenario and groupby value, and turns overflows into alerts.
//
// Buckets reason on event time, so a replay and live reading agree. One
// heap orders every bucket by its next deadline (underflow, a counter's
// timed overflow, the end of a blackhole); there is no goroutine per
// bucket, and the number of buckets is capped (Options.MaxBuckets), each
// scenario's table getting an equal share. At its cap a leaky scenario
// counts new sources in a sketch of 16 bytes a source, exact up to its
// own bound and a decaying count-min sketch beyond, and promotes those
// that near an overflow to a bucket (see table and sketch): detection
// degrades into compact, then approximate counting, visibly (Stats,
// Degraded, SketchLost), never into blindness.
package scenario
