package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Every command prints through one of two renderers, so -o table, json and
// raw mean the same everywhere: a listing for lists of items, a result for
// the one answer of an add or delete (or a whole-state view like status).

// column is one table column: its header and how an item fills it. Cells
// are returned unescaped; the table escapes them (esc).
type column[T any] struct {
	header string
	cell   func(T) string
}

// listing says how a list of T prints: -o json prints the items
// themselves as one JSON array ([] for none), -o raw the bare value of each
// on its own line, and a table the columns.
type listing[T any] struct {
	columns []column[T]
	raw     func(T) string
	// empty is what a table says when there is no item; "" prints the
	// header alone.
	empty string
	// footer, when set, is a line printed under the table.
	footer func(n int) string
}

// render prints items at once: the table is sized on all of them.
func (l listing[T]) render(w io.Writer, format string, items []T) error {
	lw := l.writer(w, format, max(len(items), 1))
	for _, it := range items {
		if err := lw.write(it); err != nil {
			return err
		}
	}
	return lw.close()
}

// writer prints items one at a time as they arrive, without holding them:
// a table is sized on its first sample rows (see streamTable).
func (l listing[T]) writer(w io.Writer, format string, sample int) *listWriter[T] {
	// Buffered: a write per item made a million system calls for a
	// million decisions.
	lw := &listWriter[T]{l: l, w: bufio.NewWriterSize(w, 64<<10), format: format}
	if format == "table" {
		header := make([]string, len(l.columns))
		for i, c := range l.columns {
			header[i] = c.header
		}
		lw.tab = newStreamTable(lw.w, header, sample)
	}
	return lw
}

// listWriter is a listing being printed.
type listWriter[T any] struct {
	l      listing[T]
	w      *bufio.Writer
	format string
	n      int
	tab    *streamTable
}

func (lw *listWriter[T]) write(it T) error {
	lw.n++
	switch lw.format {
	case "json":
		// Element by element, the layout writeJSONOut gives a slice.
		b, err := json.MarshalIndent(it, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if lw.n == 1 {
			sep = "[\n  "
		}
		_, err = io.WriteString(lw.w, sep+string(b))
		return err
	case "raw":
		_, err := fmt.Fprintln(lw.w, esc(lw.l.raw(it)))
		return err
	}
	cells := make([]string, len(lw.l.columns))
	for i, c := range lw.l.columns {
		cells[i] = c.cell(it)
	}
	return lw.tab.Row(cells)
}

// close ends the list and flushes it.
func (lw *listWriter[T]) close() error {
	var err error
	switch lw.format {
	case "json":
		end := "\n]\n"
		if lw.n == 0 {
			end = "[]\n"
		}
		_, err = io.WriteString(lw.w, end)
	case "table":
		err = lw.closeTable()
	}
	if err != nil {
		return err
	}
	return lw.w.Flush()
}

func (lw *listWriter[T]) closeTable() error {
	if lw.n == 0 && lw.l.empty != "" {
		_, err := fmt.Fprintln(lw.w, lw.l.empty)
		return err
	}
	if err := lw.tab.Close(); err != nil {
		return err
	}
	if lw.l.footer != nil {
		_, err := fmt.Fprintln(lw.w, lw.l.footer(lw.n))
		return err
	}
	return nil
}

// result says how one answer prints: -o json the value as it is, -o raw
// the raw lines (escaped, one a line), a table or text what text writes.
type result struct {
	value any
	raw   []string
	text  func(io.Writer) error
}

func (r result) render(w io.Writer, format string) error {
	switch format {
	case "json":
		return writeJSONOut(w, r.value)
	case "raw":
		for _, line := range r.raw {
			if _, err := fmt.Fprintln(w, esc(line)); err != nil {
				return err
			}
		}
		return nil
	}
	return r.text(w)
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows under a header, aligned, as a listing's table does: it
// escapes every cell (esc), so a tab or an escape sequence in a value can
// neither break the columns nor reach the terminal; callers pass cells
// unescaped.
func table(w io.Writer, header []string, rows [][]string) error {
	t := newStreamTable(w, header, max(len(rows), 1))
	for _, r := range rows {
		if err := t.Row(r); err != nil {
			return err
		}
	}
	return t.Close()
}
