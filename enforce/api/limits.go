package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Default limits (NewServer sets them on the Server).
const (
	DefaultMaxStreams           = 128
	DefaultMaxStreamsPerBouncer = 2
	DefaultMaxBulk              = 4
	DefaultBulkWait             = 2 * time.Second
	DefaultWriteTimeout         = 5 * time.Second
	// maxResponseTime bounds a whole response however steadily the client
	// reads: a startup stream of millions of decisions takes seconds.
	maxResponseTime = 5 * time.Minute
)

// ServerStats counts what the server refused or cut short since start.
type ServerStats struct {
	// Refused is requests answered 429 or 503 for a limit.
	Refused int64 `json:"refused"`
	// WriteTimeouts is responses cut off because the client stopped
	// reading.
	WriteTimeouts int64 `json:"write_timeouts"`
	// Aborted is responses cut short because the client went away.
	Aborted int64 `json:"aborted"`
}

// limits is the server's run-time state for its limits.
type limits struct {
	once  sync.Once
	bulk  chan struct{} // bouncer API responses of more than a page
	admin chan struct{} // the same on the admin socket, so bouncers cannot starve the CLI

	mu      sync.Mutex
	streams int
	per     map[string]int

	refused, timeouts, aborted atomic.Int64
}

func (s *Server) limits() *limits {
	l := &s.lim
	l.once.Do(func() {
		l.bulk = make(chan struct{}, max(1, s.MaxBulk))
		l.admin = make(chan struct{}, max(1, s.MaxBulk))
		l.per = map[string]int{}
	})
	return l
}

// Stats returns the counters.
func (s *Server) Stats() ServerStats {
	l := s.limits()
	return ServerStats{Refused: l.refused.Load(), WriteTimeouts: l.timeouts.Load(), Aborted: l.aborted.Load()}
}

// limitError is a request refused for a limit.
type limitError struct{ apiError }

func (e *limitError) Unwrap() error { return &e.apiError }

// refuse counts and reports a refusal and returns it for writeError.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) error {
	var le *limitError
	if errors.As(err, &le) {
		w.Header().Set("Retry-After", "1")
		s.limits().refused.Add(1)
		if s.OnAbort != nil {
			s.OnAbort(r, err)
		}
	}
	return err
}

// acquireStream takes one of the stream slots, in total and for the
// bouncer; the returned func gives it back.
func (s *Server) acquireStream(bouncer string) (func(), error) {
	l := s.limits()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams >= s.MaxStreams {
		return nil, &limitError{apiError{http.StatusTooManyRequests, fmt.Sprintf("too many decision streams in progress (at most %d): retry later", s.MaxStreams)}}
	}
	if l.per[bouncer] >= s.MaxStreamsPerBouncer {
		return nil, &limitError{apiError{http.StatusTooManyRequests, fmt.Sprintf("bouncer %q already has %d decision streams in progress (at most %d): retry later", bouncer, l.per[bouncer], s.MaxStreamsPerBouncer)}}
	}
	l.streams++
	l.per[bouncer]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.streams--
		if l.per[bouncer]--; l.per[bouncer] == 0 {
			delete(l.per, bouncer)
		}
	}, nil
}

// acquireBulk takes a slot of sem for a response of more than a page,
// waiting at most BulkWait; the returned func gives it back.
func (s *Server) acquireBulk(ctx context.Context, sem chan struct{}) (func(), error) {
	release := func() { <-sem }
	select {
	case sem <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(s.BulkWait)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, &limitError{apiError{http.StatusServiceUnavailable, fmt.Sprintf("too many large responses in progress (at most %d): retry later", cap(sem))}}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pageWriter writes a response a page at a time through a small buffer,
// each page under its own write deadline, so a client that stops reading
// is cut off after WriteTimeout instead of holding its slot (and, before,
// a store connection) until the whole response's timeout.
type pageWriter struct {
	s     *Server
	r     *http.Request
	rc    *http.ResponseController
	bw    *bufio.Writer
	end   time.Time
	wrote bool
	err   error
	// bulk releases the bulk slot the response holds, if any.
	bulk func()
}

func (s *Server) newPageWriter(w http.ResponseWriter, r *http.Request) *pageWriter {
	return &pageWriter{s: s, r: r, rc: http.NewResponseController(w), bw: bufio.NewWriterSize(w, 32<<10), end: time.Now().Add(maxResponseTime)}
}

// fail ends a response whose read failed. Before its first byte it is
// refused whole and its bulk slot given back; mid-body the client sees
// truncated JSON and retries, so a bouncer's sequence is not advanced.
func (p *pageWriter) fail(w http.ResponseWriter, err error) error {
	if !p.wrote {
		if p.bulk != nil {
			p.bulk()
		}
		return p.s.refuse(w, p.r, err)
	}
	p.err = err
	p.finish()
	return nil
}

// page arms the write deadline for the next page, after yielding the CPU:
// a client that reads as fast as it is written never blocks the encoding,
// which then runs 10 ms slices until the scheduler preempts it, and an
// alert's goroutine, descheduled (for a stack scan, say), queued behind a
// few of them: bans took 30-70 ms under 50 startup pulls. Yielding every
// page bounds a slice to one page (under a millisecond).
func (p *pageWriter) page() error {
	if p.err != nil {
		return p.err
	}
	runtime.Gosched()
	d := time.Now().Add(p.s.WriteTimeout)
	if d.After(p.end) {
		d = p.end
	}
	if err := p.rc.SetWriteDeadline(d); err != nil && !errors.Is(err, http.ErrNotSupported) {
		p.err = err
	}
	return p.err
}

func (p *pageWriter) write(b []byte) {
	if p.err != nil {
		return
	}
	p.wrote = true
	_, p.err = p.bw.Write(b)
}

func (p *pageWriter) writeString(s string) {
	if p.err != nil {
		return
	}
	p.wrote = true
	_, p.err = p.bw.WriteString(s)
}

// holdBulk takes a bulk slot for the rest of the response unless it holds
// one already.
func (p *pageWriter) holdBulk(sem chan struct{}) error {
	if p.bulk != nil {
		return nil
	}
	release, err := p.s.acquireBulk(p.r.Context(), sem)
	if err != nil {
		return err
	}
	p.bulk = release
	return nil
}

// finish flushes the response and releases its slot. It reports whether
// the response was written whole; a response cut short is counted.
func (p *pageWriter) finish() bool {
	if p.bulk != nil {
		defer p.bulk()
		p.bulk = nil
	}
	if p.page() == nil {
		p.err = p.bw.Flush()
	}
	if p.err == nil {
		return true
	}
	p.s.cutShort(p.r, p.err)
	return false
}

// cutShort counts and reports a response that could not be written whole.
func (s *Server) cutShort(r *http.Request, err error) {
	l := s.limits()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		l.timeouts.Add(1)
		err = fmt.Errorf("client stopped reading: cut off: %w", err)
	} else {
		l.aborted.Add(1)
	}
	if s.OnAbort != nil {
		s.OnAbort(r, err)
	}
}
