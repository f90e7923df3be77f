package acquire

import (
	"bytes"
	"unicode/utf8"
)

// splitter cuts a byte stream into lines. It holds a partial last line until
// its newline arrives and cuts lines longer than max, dropping the rest of
// such a line up to its newline.
type splitter struct {
	max     int
	partial []byte
	// skip is set after a cut until the cut line's newline is seen.
	skip bool
}

// feed scans p and calls emit for every complete (or cut) line with end,
// the index in p just past what the line used up; after emit returns, the
// splitter's state at p[end:] is clean (no partial, skip as reported by
// s.skip), so end is a resumable position. emit returns false when the line
// was not delivered (the consumer went away); feed stops at once and the
// caller must not feed p again. The line slice is valid only during emit.
func (s *splitter) feed(p []byte, emit func(line []byte, cut bool, end int) bool) bool {
	n := 0
	for n < len(p) {
		rest := p[n:]
		i := bytes.IndexByte(rest, '\n')
		if s.skip {
			if i < 0 {
				return true
			}
			s.skip = false
			n += i + 1
			continue
		}
		if i < 0 {
			if len(s.partial)+len(rest) <= s.max {
				s.partial = append(s.partial, rest...)
				return true
			}
			// Over-long without a newline yet: emit the cut now rather than
			// buffer without bound.
			take := s.max - len(s.partial)
			s.partial = append(s.partial, rest[:take]...)
			line := trimCR(cutRune(s.partial))
			s.skip = true
			ok := emit(line, true, len(p))
			s.partial = s.partial[:0]
			return ok
		}
		var line []byte
		cut := false
		if len(s.partial) == 0 {
			line = rest[:i]
		} else {
			s.partial = append(s.partial, rest[:i]...)
			line = s.partial
		}
		if len(line) > s.max {
			line = cutRune(line[:s.max])
			cut = true
		}
		n += i + 1
		ok := emit(trimCR(line), cut, n)
		s.partial = s.partial[:0]
		if !ok {
			return false
		}
	}
	return true
}

// flush returns the held partial line, for a file that ended without a
// newline and will never grow again (rotated away).
func (s *splitter) flush() []byte {
	if len(s.partial) == 0 {
		s.skip = false
		return nil
	}
	l := trimCR(s.partial)
	s.partial = s.partial[:0]
	return l
}

// reset drops any partial line (the file was truncated under it).
func (s *splitter) reset() {
	s.partial = s.partial[:0]
	s.skip = false
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

// cutRune drops a trailing incomplete UTF-8 sequence left by a cut.
func cutRune(b []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return b
		}
		if utf8.RuneStart(c) {
			if r, sz := utf8.DecodeRune(b[len(b)-i:]); r == utf8.RuneError && sz <= 1 {
				return b[:len(b)-i]
			}
			return b
		}
	}
	return b
}
