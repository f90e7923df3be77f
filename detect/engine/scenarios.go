package engine

import "github.com/moatsec/moat/detect/scenario"

// Scenarios describes the loaded scenarios' effective settings, those an
// override disabled included.
func (e *Engine) Scenarios() []scenario.Info { return e.set.Scenarios() }

// Warnings are the problems the load tolerated: scenario data files that
// could not be read, overrides that match no scenario.
func (e *Engine) Warnings() []error { return e.set.Warnings() }
