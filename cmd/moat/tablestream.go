package main

import (
	"io"
	"strings"
	"unicode/utf8"
)

// streamTable writes a table whose rows arrive one by one, without holding
// them all as tabwriter would (a million rows took over a gigabyte): the
// first rows, up to sample, are held to size the columns, and every row
// after is padded to those widths, a longer cell pushing its line wider.
type streamTable struct {
	w      io.Writer
	header []string
	sample int
	held   [][]string
	widths []int
	err    error
}

func newStreamTable(w io.Writer, header []string, sample int) *streamTable {
	return &streamTable{w: w, header: header, sample: sample}
}

// Row adds a row; cells are escaped (esc) here, as table does.
func (t *streamTable) Row(cells []string) error {
	if t.err != nil {
		return t.err
	}
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = esc(c)
	}
	if t.widths == nil {
		t.held = append(t.held, row)
		if len(t.held) >= t.sample {
			t.flushHeld()
		}
		return t.err
	}
	t.line(row)
	return t.err
}

// Close writes what is held, the header alone when no row came.
func (t *streamTable) Close() error {
	if t.widths == nil {
		t.flushHeld()
	}
	return t.err
}

func (t *streamTable) flushHeld() {
	head := make([]string, len(t.header))
	for i, h := range t.header {
		head[i] = esc(h)
	}
	t.widths = make([]int, len(head))
	for _, r := range append([][]string{head}, t.held...) {
		for i, c := range r {
			if i < len(t.widths) {
				t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	t.line(head)
	for _, r := range t.held {
		t.line(r)
	}
	t.held = nil
}

func (t *streamTable) line(cells []string) {
	if t.err != nil {
		return
	}
	var b strings.Builder
	for i, c := range cells {
		b.WriteString(c)
		if i == len(cells)-1 {
			break
		}
		pad := 2
		if i < len(t.widths) {
			pad += t.widths[i] - utf8.RuneCountInString(c)
		}
		b.WriteString(strings.Repeat(" ", max(pad, 2)))
	}
	b.WriteByte('\n')
	_, t.err = io.WriteString(t.w, b.String())
}
