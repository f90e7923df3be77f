package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/sdjournal"
)

// moatUnit is the systemd unit the package installs.
const moatUnit = "moat.service"

// Bounds of the journal read when the daemon does not answer: the newest
// warnings and errors among the unit's latest entries.
const (
	supportJournalLines = 200
	supportJournalScan  = 20000
)

// journalErrors returns the unit's latest entries at priority warning or
// more severe, up to n, oldest first, one line each. It reads the journal
// through libsystemd, as the journald source does; reading it takes root
// or the systemd-journal (or adm) group.
func journalErrors(n int) ([]string, error) {
	j, err := sdjournal.NewJournal()
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer j.Close()
	if err := j.AddMatch(sdjournal.SD_JOURNAL_FIELD_SYSTEMD_UNIT + "=" + moatUnit); err != nil {
		return nil, fmt.Errorf("match: %w", err)
	}
	if err := j.SeekTail(); err != nil {
		return nil, fmt.Errorf("seek: %w", err)
	}
	var out []string
	for scanned := 0; scanned < supportJournalScan && len(out) < n; scanned++ {
		c, err := j.Previous()
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if c == 0 {
			break
		}
		e, err := j.GetEntry()
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		prio, err := strconv.Atoi(e.Fields[sdjournal.SD_JOURNAL_FIELD_PRIORITY])
		if err != nil || prio > 4 {
			continue
		}
		at := time.UnixMicro(int64(e.RealtimeTimestamp)).UTC().Format(time.RFC3339)
		out = append(out, fmt.Sprintf("%s <%d> %s\n", at, prio, e.Fields[sdjournal.SD_JOURNAL_FIELD_MESSAGE]))
	}
	for i, k := 0, len(out)-1; i < k; i, k = i+1, k-1 {
		out[i], out[k] = out[k], out[i]
	}
	return out, nil
}
