package metrics

import (
	"context"
	"net/netip"
	"time"

	"github.com/moatsec/moat/internal/model"
)

// The interfaces below are what the Server reads at scrape time. Each is as
// small as the metrics need, over types declared here: internal/ is the
// bottom layer and names nothing of detect or enforce. cmd/moat adapts the
// real components.

// SourceStat is one acquisition source's counters.
type SourceStat struct {
	Name string
	// Kind is the source type ("file", "journald"), a label only.
	Kind                           string
	Lines, Bytes, Errors, CutLines uint64
	// Lag is how far the source is behind the end of its log.
	Lag time.Duration
	// Up is false while the source cannot read (missing file, journal
	// error); Err then says why.
	Up  bool
	Err string
}

// Sources lists the acquisition sources.
type Sources interface {
	SourceStats() []SourceStat
}

// EngineStats is the detection engine's counters, as the metrics name them.
type EngineStats struct {
	Lines, Parsed, Unparsed, Whitelisted uint64
	// Reprocessed are overflows poured into the scenarios again, and
	// ReprocessDropped those past the depth limit that were not.
	Reprocessed, ReprocessDropped uint64
	// ProxyRewritten are HTTP events whose client a trusted proxy's header
	// named, ProxyRefused those whose header named none usable.
	ProxyRewritten, ProxyRefused uint64
	// ContextErrors are alert context expressions that failed.
	ContextErrors uint64
	Parsers       []ParserStat
	Scenarios     []ScenarioStat
	// GrokPatterns counts compiled grok patterns per matcher tier that
	// serves them first ("fast", "backtrack", "regexp").
	GrokPatterns map[string]int
}

// ParserStat is one parser node of a stage.
type ParserStat struct {
	Stage, Parser string
	// Hits counts events that entered the node, Parsed those it succeeded on.
	Hits, Parsed uint64
}

// ScenarioStat is one scenario's counters and its bucket table's state.
type ScenarioStat struct {
	Name                                string
	Pours, Overflows, Evictions, Errors uint64
	Buckets, MaxBuckets                 int
	Degraded                            bool
	SketchPours, Promotions, SketchLost uint64
}

// Engine is the detection engine.
type Engine interface {
	Stats() EngineStats
}

// ReconcilerStats is the kernel writer's counters.
type ReconcilerStats struct {
	Batches, ApplyErrors, Refused, Drift uint64
	// Entries is the number of prefixes the kernel should hold.
	Entries   int64
	LastApply time.Duration
	Repairs   []RepairStat
}

// RepairStat counts the entries of one kind ("missing", "extra",
// "expiry") verify passes repaired in one backend.
type RepairStat struct {
	Backend, Kind string
	Count         uint64
}

// Reconciler is the kernel writer.
type Reconciler interface {
	Stats() ReconcilerStats
}

// DropCounter is what one drop rule matched.
type DropCounter struct {
	Packets, Bytes uint64
}

// NFTables reads the nftables backend.
type NFTables interface {
	// DropCounters returns the drop rules' counters keyed by set name.
	DropCounters(ctx context.Context) (map[string]DropCounter, error)
	// Elements counts the elements each of moat's sets holds in the kernel,
	// read from the kernel; it may take seconds and is called at most once
	// per ElementsInterval, concurrently with the backend's writer.
	Elements(ctx context.Context) (map[string]int, error)
}

// XDPCounters are the XDP program's counters, summed over CPUs.
type XDPCounters struct {
	DroppedPackets, DroppedBytes, PassedPackets, ExpiredHits uint64
}

// XDP reads the XDP backend.
type XDP interface {
	XDPCounters() (XDPCounters, error)
	// Elements counts the entries each ban map holds in the kernel, as
	// NFTables.Elements does.
	Elements(ctx context.Context) (map[string]int, error)
}

// CreatedStat counts alerts or decisions created since start for one
// scenario and origin.
type CreatedStat struct {
	Scenario string
	Origin   model.Origin
	Count    uint64
}

// DecisionCounts is the decision service's view: what is active now and
// what was created since start.
type DecisionCounts struct {
	Active            map[model.Origin]int
	Alerts, Decisions []CreatedStat
	// StoreErrors counts failed store writes of enforced bans since start;
	// PendingStore is the alerts whose bans are enforced and not yet
	// stored (a full or failing disk shows in both).
	StoreErrors  uint64
	PendingStore int64
}

// Decisions reads the decision service.
type Decisions interface {
	DecisionCounts(ctx context.Context) (DecisionCounts, error)
}

// DecisionFilter narrows the status page's decision list.
type DecisionFilter struct {
	// IP, when valid, keeps the decisions whose value contains it.
	IP    netip.Addr
	Limit int
}

// StatusReader feeds the status page's lists.
type StatusReader interface {
	ActiveDecisions(ctx context.Context, f DecisionFilter) ([]model.Decision, error)
	RecentAlerts(ctx context.Context, n int) ([]model.Alert, error)
}
