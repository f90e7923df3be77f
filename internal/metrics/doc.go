// Package metrics exposes moat's counters to Prometheus, summarises a scrape
// for `moat metrics`, and serves a small read-only status page.
//
// Every figure is read from its component at scrape time through a small
// interface declared here, into a registry the Server owns: nothing is a
// package-level metric vector. The one metric observed on the hot path is the
// detection-to-kernel latency histogram (Latency), fed by the reconciler's
// Applied hook.
package metrics
