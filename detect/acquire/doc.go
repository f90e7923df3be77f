// Package acquire reads log lines for moat: files followed across rotation,
// the systemd journal followed live, and cold replays of files or journal
// directories. Each source streams detect.Line values on a channel from one
// goroutine, keeps its position under a state directory so a restart resumes
// where it stopped, and counts what it read in Stats.
//
// Position guarantee. A source saves a position only for lines whose send on
// the output channel has completed, so a line the consumer never received is
// never skipped. After a clean stop (the context cancelled) the saved
// position is exactly the last line sent: a restart neither loses nor
// repeats a line. After a crash the saved position may trail the last line
// sent by at most the save interval (StateInterval, 200ms by default), and
// those lines are read again: delivery is at-least-once, never lossy. Lines
// sitting in a channel buffer count as received; use an unbuffered channel
// when the consumer must have taken each line before it is recorded.
//
// The package never logs. Read errors (an unreadable file, a corrupt journal
// file) are counted in Stats.Errors, the newest one is kept in
// Stats.LastError, and the source carries on with its other inputs.
package acquire
