package exprenv

import (
	"testing"

	"github.com/moatsec/moat/detect"
)

// The event is in the variables from Bind to Unbind, and only then.
func TestEvtVars(t *testing.T) {
	empty := (*detect.Event)(nil)
	v := NewEvtVars(empty)
	v.Unbind()
	if got := v.m["evt"]; got != any(empty) {
		t.Fatalf("before Bind: evt = %v, want the empty value", got)
	}
	evt := detect.NewEvent(detect.Line{Raw: "x"})
	if m := v.Bind(evt); m["evt"] != any(evt) {
		t.Fatalf("Bind: evt = %v, want the event", m["evt"])
	}
	v.Unbind()
	if got, ok := v.m["evt"].(*detect.Event); !ok || got != nil {
		t.Fatalf("after Unbind: evt = %#v, want a nil *detect.Event", v.m["evt"])
	}
}
