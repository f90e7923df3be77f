// Package bench is moat's benchmark suite, driven by cmd/moat-bench: the
// live log-line-to-dropped-packet latency through a tailed file and a
// private journald into the nftables and XDP backends, replay throughput
// and accuracy on the shared corpus (beside CrowdSec's, when installed),
// the cost of a million decisions, and the drop rate of each filter. Every
// measurement is repeated; the result is one JSON document, a text table
// and SVG charts, all written by this package.
//
// It runs moat, the test binaries of moat's own benchmarks and the peers
// as child processes, and creates network namespaces with ip(8), so it is
// one of the few places outside tests allowed to import os/exec
// (internal/guard names it).
package bench
