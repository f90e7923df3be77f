package setup

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/sdjournal"
)

// sdJournal reads the systemd journal through libsystemd.
type sdJournal struct{ j *sdjournal.Journal }

// OpenJournal opens the journal of the host at root: the system journal
// for "/", else the files under root's /var/log/journal or
// /run/log/journal. It returns nil and no error when root has no journal,
// or one without a single entry: a host where journald does not run (a
// container) would otherwise look like one whose services have not
// logged yet, and get journal sources that never read a line.
func OpenJournal(root string) (Journal, error) {
	var j *sdjournal.Journal
	var err error
	if root == "/" || root == "" {
		if j, err = sdjournal.NewJournal(); err != nil {
			return nil, fmt.Errorf("open the journal: %w", err)
		}
	} else {
		for _, d := range []string{"var/log/journal", "run/log/journal"} {
			dir := filepath.Join(root, d)
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				continue
			}
			if j, err = sdjournal.NewJournalFromDir(dir); err != nil {
				return nil, fmt.Errorf("open the journal in %s: %w", dir, err)
			}
			break
		}
		if j == nil {
			return nil, nil
		}
	}
	n, err := j.Next()
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("read the journal: %w", err)
	}
	if n == 0 {
		j.Close()
		return nil, nil
	}
	return &sdJournal{j}, nil
}

// Seen asks, identifier by identifier, for one entry since the time: each
// question is an index lookup, where listing every identifier the journal
// ever held would say nothing of which are still logging.
func (s *sdJournal) Seen(ids []string, since time.Time) (map[string]bool, error) {
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		s.j.FlushMatches()
		if err := s.j.AddMatch(sdjournal.SD_JOURNAL_FIELD_SYSLOG_IDENTIFIER + "=" + id); err != nil {
			return nil, fmt.Errorf("journal match %s: %w", id, err)
		}
		// A zero time means any entry: its UnixMicro is negative and
		// would wrap to a seek past the end.
		err := s.j.SeekHead()
		if !since.IsZero() && since.UnixMicro() > 0 {
			err = s.j.SeekRealtimeUsec(uint64(since.UnixMicro()))
		}
		if err != nil {
			return nil, fmt.Errorf("journal seek: %w", err)
		}
		n, err := s.j.Next()
		if err != nil {
			return nil, fmt.Errorf("journal read: %w", err)
		}
		seen[id] = n > 0
	}
	s.j.FlushMatches()
	return seen, nil
}

func (s *sdJournal) Close() error { return s.j.Close() }
