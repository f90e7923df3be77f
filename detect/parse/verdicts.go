package parse

import (
	"strings"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/exprenv"
)

// A stage of a hub with many collections holds a parser per service,
// each with a filter on the program that logged the line
// (evt.Parsed.program == 'dovecot'), and every line runs all of them. A
// filter that is a pure function of one field (exprenv.SoleField) gives
// the same verdict for every line with the same value there: its
// verdicts are kept by value, so that the filters of a stage reading
// evt.Parsed.program run once per program name, not once per line.

// filterGroup is the filters that read one field.
type filterGroup struct {
	field exprenv.Field
	size  int
}

// groupFilter puts n's filter in the group of the field it is a pure
// function of, if it is one.
func (p *Pipeline) groupFilter(n *node) {
	f, ok := n.fastFilter.SoleField()
	if !ok {
		return
	}
	g := -1
	for i := range p.filterGroups {
		if p.filterGroups[i].field == f {
			g = i
			break
		}
	}
	if g < 0 {
		g = len(p.filterGroups)
		p.filterGroups = append(p.filterGroups, filterGroup{field: f})
	}
	n.filterGroup, n.filterSlot = g, p.filterGroups[g].size
	p.filterGroups[g].size++
}

// The verdicts a verdictCache keeps for a filter.
const (
	verdictUnknown int8 = iota
	verdictTrue
	verdictFalse
)

// maxVerdictValues bounds the values a verdictCache keeps: a local user
// can log under any program name.
const maxVerdictValues = 1024

// verdictCache is one pipeline's cache of a filterGroup's verdicts, by
// the field's value. Not safe for concurrent use.
type verdictCache struct {
	read    func(*detect.Event) string
	size    int
	byValue map[string][]int8
	// last is the value read last and its verdicts: the filters of a
	// stage read the same value one after the other.
	last      string
	lastVerds []int8
}

func (p *Pipeline) newVerdicts() []verdictCache {
	vs := make([]verdictCache, len(p.filterGroups))
	for i, g := range p.filterGroups {
		vs[i] = verdictCache{read: g.field.Reader(), size: g.size, byValue: map[string][]int8{}}
	}
	return vs
}

// verdicts returns the verdicts for the field's value on evt, to read and
// fill in.
func (c *verdictCache) verdicts(evt *detect.Event) []int8 {
	v := c.read(evt)
	if c.lastVerds != nil && v == c.last {
		return c.lastVerds
	}
	vs, ok := c.byValue[v]
	if !ok {
		if len(c.byValue) >= maxVerdictValues {
			clear(c.byValue)
		}
		// The value is a slice of a log line; the key must not keep the
		// line.
		v = strings.Clone(v)
		vs = make([]int8, c.size)
		c.byValue[v] = vs
	}
	c.last, c.lastVerds = v, vs
	return vs
}
