// Package setup finds the services a host runs (Debian packages, systemd
// units, log files, journald identifiers) and plans what moat should read
// for each: acquisition entries and the collections that parse them. It
// only ever adds an acquisition file of its own; the main configuration,
// the allowlist and the enforcement settings are never its business.
package setup
