package config

import (
	"fmt"

	"github.com/moatsec/moat/internal/model"
	"github.com/moatsec/moat/internal/yamlerr"
)

// validateNeverBlock checks enforce.never_block, naming the line of the
// first bad entry.
func (c *Config) validateNeverBlock(bad func(msg string, keys ...any) error) error {
	for i, s := range c.Enforce.NeverBlock {
		if _, err := model.ParsePortProtos([]string{s}); err != nil {
			return bad(fmt.Sprintf("never_block %s: want PORT/tcp, PORT/udp or PORT (both), with PORT 1-65535", yamlerr.Excerpt(s)), "enforce", "never_block", i)
		}
	}
	return nil
}

// NeverBlockPorts is enforce.never_block parsed; a loaded configuration has
// been validated, so nothing is left out.
func (e Enforce) NeverBlockPorts() []model.PortProto {
	ps, _ := model.ParsePortProtos(e.NeverBlock)
	return ps
}
