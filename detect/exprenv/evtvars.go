package exprenv

// EvtVars are the variables of VM runs on one event at a time. The event
// goes in only when a run needs it (an expression the native evaluator
// could not decide): most events never do, and a map write per event is
// not free. Unbind puts the empty value back, when the event went in, so
// that no event outlives its run in them.
type EvtVars struct {
	m     map[string]any
	empty any
	bound bool
}

// NewEvtVars returns variables whose "evt" is empty (a typed nil, so
// that the VM knows its type) until Bind.
func NewEvtVars(empty any) EvtVars {
	return EvtVars{m: map[string]any{"evt": empty}, empty: empty}
}

// Bind puts evt in the variables and returns them for the VM.
func (v *EvtVars) Bind(evt any) map[string]any {
	v.m["evt"] = evt
	v.bound = true
	return v.m
}

// Unbind takes the event out again, if one went in since the last call.
func (v *EvtVars) Unbind() {
	if v.bound {
		v.m["evt"] = v.empty
		v.bound = false
	}
}
