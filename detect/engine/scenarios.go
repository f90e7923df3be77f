package engine

import "github.com/moatsec/moat/detect/scenario"

// Scenarios describes the loaded scenarios' effective settings, those an
// override disabled included.
func (e *Engine) Scenarios() []scenario.Info { return e.set.Scenarios() }

// Warnings are the problems the load tolerated: scenario data files that
// could not be read, overrides that match no scenario, contexts a
// collection names that the hub lacks.
func (e *Engine) Warnings() []error {
	return append(append([]error(nil), e.set.Warnings()...), e.warnings...)
}

// ContextKeys are the alert context keys the engine fills.
func (e *Engine) ContextKeys() []string { return e.ctx.Keys() }
