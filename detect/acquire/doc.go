// Package acquire reads log lines for moat: files followed across rotation,
// the systemd journal followed live, syslog messages received over UDP or
// TCP, the output of a command, container logs through the Docker Engine
// API, and cold replays of files or journal directories. Each source
// streams detect.Line values on a channel, keeps its position (where its
// input has one: files, the journal, container logs) under a state
// directory so a restart resumes where it stopped, and counts what it read
// in Stats. A syslog listener and a command have no position: what is
// sent while moat is down is the sender's to keep.
//
// Position guarantee. By default a source saves a position only for lines
// whose send on the output channel has completed, so a line the consumer
// never received is never skipped. After a clean stop (the context
// cancelled) the saved position is exactly the last line sent: a restart
// neither loses nor repeats a line. After a crash the saved position may
// trail the last line sent by at most the save interval (StateInterval),
// and those lines are read again. But a line received is not a line acted
// on: a crash loses whatever the consumer held.
//
// Acknowledgements. A source built with New(cfg, dir, WithAcks()) saves
// only what its consumer acknowledged. Every line carries a Pos; the
// consumer calls
//
//	line.Pos.Ack()
//
// once everything the line raised (and every earlier line of the same
// source) is durably handled, lines that raised nothing included. Ack is
// cumulative per source, cheap (an atomic compare-and-swap), safe from any
// goroutine and in any order: an older position acknowledged after a newer
// one changes nothing. A consumer merging several sources can keep the
// newest position per Pos.Source() and acknowledge only that. The source
// saves the newest acknowledged position every StateInterval or after
// AckSaveLines acknowledged lines, whichever comes first, and when Stream
// returns; it never saves past an acknowledged line. A consumer that
// acknowledges after Stream returned calls Checkpoint (see Checkpointer)
// once it has finished. After a crash, lines not acknowledged (and at most
// one save interval of acknowledged ones) are read again; none is skipped.
// File positions are a file's identity (device, inode, a hash of its first
// bytes) and the byte offset after the line; journal positions are entry
// cursors. Replays keep no position: their lines carry the zero Pos, whose
// Ack does nothing.
//
// Rotation. A file renamed away from its path is read on, from the same
// descriptor, until it has not grown for DrainGrace, since its writer
// appends to it until it reopens its log; copytruncate is seen as a file
// shorter than the offset (or with other first bytes). A source started
// after its files were rotated resumes in the generation holding its saved
// position, found by inode or by its first bytes (also inside .gz
// generations), then reads every newer generation, oldest first, then the
// live file.
//
// The package never logs, but for what a command source's program writes
// to stderr, which goes (bounded) to the logger given by WithLogger. Read
// errors (an unreadable file, a corrupt journal file, a refused syslog
// connection, an unreachable Docker API) are counted in Stats.Errors, the
// newest one is kept in Stats.LastError, and the source carries on with
// its other inputs.
// Replay reports each damaged input (a corrupt or truncated gzip, a read
// error) in Replay.Damage, naming the file and where it broke.
package acquire
