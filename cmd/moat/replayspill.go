package main

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/api"
	"github.com/moatsec/moat/internal/model"
)

// alertSpill keeps a replay's alerts for printing in replay order (by
// first event, then scenario and source) in bounded memory, so that a
// replay's memory does not grow with the log it reads (a 10M-line log
// raises 245k alerts): an external merge sort. Alerts gather in a chunk;
// a full chunk is sorted and written as a run to an unlinked temporary
// file, and printing merges the runs.
type alertSpill struct {
	f     *os.File
	off   int64
	chunk []api.Alert
	runs  []spillRun
	buf   []byte
	err   error
}

// spillRun is a sorted run of the file.
type spillRun struct{ off, size int64 }

// spillChunk alerts (about 300 bytes each without their events) are
// sorted in memory at a time.
const spillChunk = 8192

// maxTableSample bounds the rows a table is sized on; later rows wider
// than those are still printed whole.
const maxTableSample = 10_000

func newAlertSpill() (*alertSpill, error) {
	f, err := os.CreateTemp("", "moat-replay-*")
	if err != nil {
		return nil, fmt.Errorf("replay: temporary file for the alerts: %w", err)
	}
	// Unlinked at once: nothing stays behind, however the replay ends.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("replay: temporary file for the alerts: %w", err)
	}
	return &alertSpill{f: f}, nil
}

// add keeps alerts as replay prints them: without their events, in UTC.
func (s *alertSpill) add(alerts []model.Alert) {
	for _, a := range alerts {
		al := api.AlertOf(a)
		al.Start, al.Stop = al.Start.UTC(), al.Stop.UTC()
		s.chunk = append(s.chunk, al)
		if len(s.chunk) == spillChunk {
			s.spill()
		}
	}
}

func replayOrder(a, b api.Alert) int {
	return cmp.Or(a.Start.Compare(b.Start), strings.Compare(a.Scenario, b.Scenario), strings.Compare(a.Value, b.Value))
}

// spill writes the chunk as a sorted run.
func (s *alertSpill) spill() {
	if s.err != nil {
		s.chunk = s.chunk[:0]
		return
	}
	slices.SortStableFunc(s.chunk, replayOrder)
	s.buf = s.buf[:0]
	for _, al := range s.chunk {
		rec := encodeSpilled(nil, al)
		s.buf = binary.AppendUvarint(s.buf, uint64(len(rec)))
		s.buf = append(s.buf, rec...)
	}
	if _, err := s.f.WriteAt(s.buf, s.off); err != nil {
		s.err = fmt.Errorf("replay: spill alerts: %w", err)
	}
	s.runs = append(s.runs, spillRun{s.off, int64(len(s.buf))})
	s.off += int64(len(s.buf))
	clear(s.chunk)
	s.chunk = s.chunk[:0]
}

// write prints the alerts in replay order. Runs hold alerts in the order
// they were raised, and ties go to the earlier run: the order of a stable
// sort of them all.
func (s *alertSpill) write(w io.Writer, format string) error {
	if len(s.runs) == 0 {
		slices.SortStableFunc(s.chunk, replayOrder)
		return replayListing.render(w, format, s.chunk)
	}
	s.spill()
	if s.err != nil {
		return s.err
	}
	heads := make([]*runReader, 0, len(s.runs))
	for _, r := range s.runs {
		rr := &runReader{r: bufio.NewReaderSize(io.NewSectionReader(s.f, r.off, r.size), 4096)}
		if ok, err := rr.next(); err != nil {
			return err
		} else if ok {
			heads = append(heads, rr)
		}
	}
	lw := replayListing.writer(w, format, maxTableSample)
	for len(heads) > 0 {
		least := 0
		for i := 1; i < len(heads); i++ {
			if replayOrder(heads[i].head, heads[least].head) < 0 {
				least = i
			}
		}
		if err := lw.write(heads[least].head); err != nil {
			return err
		}
		if ok, err := heads[least].next(); err != nil {
			return err
		} else if !ok {
			heads = slices.Delete(heads, least, least+1)
		}
	}
	return lw.close()
}

// runReader reads a run one alert at a time.
type runReader struct {
	r    *bufio.Reader
	head api.Alert
	rec  []byte
}

func (rr *runReader) next() (bool, error) {
	n, err := binary.ReadUvarint(rr.r)
	if err == io.EOF {
		return false, nil
	}
	if err == nil {
		rr.rec = slices.Grow(rr.rec[:0], int(n))[:n]
		_, err = io.ReadFull(rr.r, rr.rec)
	}
	if err != nil {
		return false, fmt.Errorf("replay: read back alerts: %w", err)
	}
	rr.head = decodeSpilled(rr.rec)
	return true, nil
}

func (s *alertSpill) Close() error { return s.f.Close() }

// encodeSpilled appends the fields a replay prints of al, strings byte for
// byte (a JSON round trip would mend the invalid UTF-8 that tables must
// show escaped).
func encodeSpilled(b []byte, al api.Alert) []byte {
	for _, v := range []string{al.Scenario, al.ScenarioVersion, al.Message, al.Scope, al.Value} {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	for _, t := range []time.Time{al.Start, al.Stop} {
		if t.IsZero() {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendVarint(b, t.UnixNano())
	}
	b = binary.AppendVarint(b, int64(al.EventsCount))
	var flags byte
	if al.Remediation {
		flags |= 1
	}
	if al.Simulated {
		flags |= 2
	}
	return append(b, flags)
}

// decodeSpilled reads what encodeSpilled wrote, which never left this
// process: its input is trusted.
func decodeSpilled(b []byte) api.Alert {
	str := func() string {
		n, k := binary.Uvarint(b)
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v
	}
	var al api.Alert
	al.Scenario, al.ScenarioVersion, al.Message, al.Scope, al.Value = str(), str(), str(), str(), str()
	for _, t := range []*time.Time{&al.Start, &al.Stop} {
		set := b[0] == 1
		b = b[1:]
		if set {
			ns, k := binary.Varint(b)
			*t = time.Unix(0, ns).UTC()
			b = b[k:]
		}
	}
	n, k := binary.Varint(b)
	al.EventsCount = int(n)
	al.Remediation, al.Simulated = b[k]&1 != 0, b[k]&2 != 0
	return al
}
