// Package detect turns log lines into alerts. Its subpackages read lines
// (acquire), parse them with hub parsers (parse), pour the events into
// scenario buckets (scenario) and load hub content (hub). This package holds
// the event model they share.
package detect
