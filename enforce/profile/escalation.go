package profile

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// rawEscalation is duration_escalation: as written.
type rawEscalation struct {
	Factor     float64 `yaml:"factor"`
	Max        string  `yaml:"max"`
	Jitter     string  `yaml:"jitter"`
	DecayAfter string  `yaml:"decay_after"`
}

// rawRecidive is recidive: as written.
type rawRecidive struct {
	Bans     int    `yaml:"bans"`
	Within   string `yaml:"within"`
	Duration string `yaml:"duration"`
}

// Escalation lengthens the ban of a repeat offender: each earlier ban of
// the same address within DecayAfter multiplies the duration by Factor, up
// to Max, and Jitter spreads the result so that addresses banned together
// are not all released in the same second.
type Escalation struct {
	Factor float64
	// Max caps the duration; 0 is MaxDuration.
	Max time.Duration
	// Jitter is the fraction (0 to 0.5) the duration may move either way.
	Jitter float64
	// DecayAfter is how far back earlier bans count.
	DecayAfter time.Duration
}

// Recidive gives the Bans-th ban of one address within Within, whatever
// scenarios raised them, Duration (Forever when zero and forever is set).
type Recidive struct {
	Bans     int
	Within   time.Duration
	Duration time.Duration
	Forever  bool
}

// MaxDuration bounds an escalated duration with no max: ten years, as the
// API bounds a decision's.
const MaxDuration = 10 * 365 * 24 * time.Hour

// defaultDecay is how far back escalation counts when decay_after is not
// given: the store's default retention, beyond which nothing is counted.
const defaultDecay = 30 * 24 * time.Hour

func parseEscalation(raw *rawEscalation, bad func(key string, format string, args ...any) error) (*Escalation, error) {
	e := &Escalation{Factor: raw.Factor, DecayAfter: defaultDecay}
	if raw.Factor < 1 || math.IsInf(raw.Factor, 0) || raw.Factor > 1000 {
		return nil, bad("factor", "duration_escalation: factor %v: want a number from 1 to 1000", raw.Factor)
	}
	if raw.Max != "" {
		d, forever, err := model.ParseDuration(raw.Max)
		if err != nil || forever {
			return nil, bad("max", "duration_escalation: max %q: want a duration such as 7d", raw.Max)
		}
		e.Max = d
	}
	if raw.Jitter != "" {
		j, err := parsePercent(raw.Jitter)
		if err != nil || j > 0.5 {
			return nil, bad("jitter", "duration_escalation: jitter %q: want a percentage from 0%% to 50%%", raw.Jitter)
		}
		e.Jitter = j
	}
	if raw.DecayAfter != "" {
		d, forever, err := model.ParseDuration(raw.DecayAfter)
		if err != nil || forever {
			return nil, bad("decay_after", "duration_escalation: decay_after %q: want a duration such as 30d", raw.DecayAfter)
		}
		e.DecayAfter = d
	}
	return e, nil
}

func parseRecidive(raw *rawRecidive, bad func(key string, format string, args ...any) error) (*Recidive, error) {
	r := &Recidive{Bans: raw.Bans}
	if raw.Bans < 2 {
		return nil, bad("bans", "recidive: bans %d: want 2 or more (the ban that triggers it counts)", raw.Bans)
	}
	d, forever, err := model.ParseDuration(raw.Within)
	if err != nil || forever {
		return nil, bad("within", "recidive: within %q: want a duration such as 24h", raw.Within)
	}
	r.Within = d
	if r.Duration, r.Forever, err = model.ParseDuration(raw.Duration); err != nil {
		return nil, bad("duration", "recidive: duration %q: want a duration such as 7d, or forever", raw.Duration)
	}
	return r, nil
}

// parsePercent reads "10%" or "0.1" as 0.1.
func parsePercent(s string) (float64, error) {
	s = strings.TrimSpace(s)
	div := 1.0
	if t, ok := strings.CutSuffix(s, "%"); ok {
		s, div = strings.TrimSpace(t), 100
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsNaN(v) {
		return 0, fmt.Errorf("bad percentage %q", s)
	}
	return v / div, nil
}

// Apply escalates base for an address with earlier bans, counted within
// DecayAfter. u, in [0, 1), places the jitter: 0 is the shortest, 0.5 none.
func (e *Escalation) Apply(base time.Duration, earlier int, u float64) time.Duration {
	ceiling := e.Max
	if ceiling <= 0 {
		ceiling = MaxDuration
	}
	// In floating point: 2^40 hours overflows a Duration long before the
	// cap is applied.
	d := float64(base) * math.Pow(e.Factor, float64(earlier))
	if d > float64(ceiling) || math.IsInf(d, 0) {
		d = float64(ceiling)
	}
	d *= 1 + e.Jitter*(2*u-1)
	if d > float64(ceiling) {
		d = float64(ceiling)
	}
	return max(time.Duration(d), time.Second)
}

// escalate returns the duration of a ban on value for profile p: its
// template's, escalated, or recidive's, whichever is longer; a ban forever
// stays so. It reports when the recidive rule decided.
func (p *Profile) escalate(ctx context.Context, c Counter, value string, base time.Duration, forever bool, now time.Time, rnd func() float64) (time.Duration, bool, string, error) {
	if c == nil || forever {
		return base, forever, "", nil
	}
	value = canonicalValue(value)
	dur := base
	if e := p.Escalation; e != nil {
		n, err := c.CountDecisions(ctx, value, now.Add(-e.DecayAfter))
		if err != nil {
			return 0, false, "", fmt.Errorf("profile %s: duration_escalation: %w", p.Name, err)
		}
		dur = e.Apply(base, n, rnd())
	}
	if r := p.Recidive; r != nil {
		n, err := c.CountDecisions(ctx, value, now.Add(-r.Within))
		if err != nil {
			return 0, false, "", fmt.Errorf("profile %s: recidive: %w", p.Name, err)
		}
		if n+1 >= r.Bans && (r.Forever || r.Duration > dur) {
			return r.Duration, r.Forever, fmt.Sprintf("recidive: ban %d within %s", n+1, model.FormatDuration(r.Within)), nil
		}
	}
	return dur, false, "", nil
}

func (s *Set) random() func() float64 {
	if s.Rand != nil {
		return s.Rand
	}
	return rand.Float64
}
