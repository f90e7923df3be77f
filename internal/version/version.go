// Package version holds moat's version, set at link time by the Makefile and
// the Debian build (-X github.com/moatsec/moat/internal/version.Version=...).
package version

// Version is "dev" in a plain `go build`.
var Version = "dev"
