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
// /run/log/journal. It returns nil and no error when root has no journal.
func OpenJournal(root string) (Journal, error) {
	if root == "/" || root == "" {
		j, err := sdjournal.NewJournal()
		if err != nil {
			return nil, fmt.Errorf("open the journal: %w", err)
		}
		return &sdJournal{j}, nil
	}
	for _, d := range []string{"var/log/journal", "run/log/journal"} {
		dir := filepath.Join(root, d)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		j, err := sdjournal.NewJournalFromDir(dir)
		if err != nil {
			return nil, fmt.Errorf("open the journal in %s: %w", dir, err)
		}
		return &sdJournal{j}, nil
	}
	return nil, nil
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
