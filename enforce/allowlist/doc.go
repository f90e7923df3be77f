// Package allowlist keeps the allowlist entries that change while the
// daemon runs: hostnames re-resolved on their DNS TTL, entries that
// expire, include files reread when they change, entries added at run
// time, and the addresses of live login sessions on this host. It answers
// which entry protects an address, and tells its caller when addresses
// become protected so their bans can be lifted.
//
// Entries that are plain addresses or ranges and never expire are also
// kept by the decision service and the kernel guard from the
// configuration alone; this package adds what those cannot know.
package allowlist
