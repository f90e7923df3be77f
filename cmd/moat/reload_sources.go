package main

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/internal/metrics"
)

// sourceSet runs the acquisition sources and lets a reload replace the
// ones whose configuration changed while the others keep reading.
type sourceSet struct {
	stateDir string
	log      *slog.Logger

	mu      sync.Mutex
	ctx     context.Context // set by run: where started sources live
	lines   chan<- detect.Line
	running []*runningSource
	wg      sync.WaitGroup
}

type runningSource struct {
	src  acquire.Source
	key  acquire.Config
	stop context.CancelFunc
	done chan struct{}
}

// sourceKey is what makes two acquisition documents the same source: all
// but where the document sits in its file.
func sourceKey(c acquire.Config) acquire.Config {
	c.File, c.Line = "", 0
	return c
}

// add builds and registers a source; before run it only waits to start.
func (s *sourceSet) add(c acquire.Config) (acquire.Source, error) {
	src, err := acquire.New(c, s.stateDir, acquire.WithAcks(), acquire.WithLogger(s.log))
	if err != nil {
		return nil, contentError{err}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := &runningSource{src: src, key: sourceKey(c)}
	s.running = append(s.running, rs)
	if s.ctx != nil {
		s.start(rs)
	}
	return src, nil
}

// start runs rs; s.mu is held.
func (s *sourceSet) start(rs *runningSource) {
	ctx, cancel := context.WithCancel(s.ctx)
	rs.stop, rs.done = cancel, make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(rs.done)
		// One source failing never stops the others, nor detection.
		if err := rs.src.Stream(ctx, s.lines); err != nil && ctx.Err() == nil {
			s.log.Error("source stopped", "source", rs.src.Name(), "err", err)
		}
	}()
}

// run starts the registered sources and, once ctx ends, waits for all of
// them: each saves its position on the way out.
func (s *sourceSet) run(ctx context.Context, lines chan<- detect.Line) error {
	s.mu.Lock()
	s.ctx, s.lines = ctx, lines
	for _, rs := range s.running {
		s.start(rs)
	}
	s.mu.Unlock()
	<-ctx.Done()
	s.wg.Wait()
	return nil
}

// list returns the sources now configured.
func (s *sourceSet) list() []acquire.Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]acquire.Source, len(s.running))
	for i, rs := range s.running {
		out[i] = rs.src
	}
	return out
}

// replace makes cfgs the running set: sources whose document is unchanged
// keep reading; the others stop (saving their position) before their
// replacements start, so a source renamed in place resumes where it was.
// It returns the sources started.
func (s *sourceSet) replace(cfgs []acquire.Config) (started []acquire.Source, kept, stopped int, err error) {
	s.mu.Lock()
	var keep, drop []*runningSource
	var fresh []acquire.Config
	taken := make([]bool, len(s.running))
	for _, c := range cfgs {
		k := sourceKey(c)
		found := false
		for i, rs := range s.running {
			if !taken[i] && reflect.DeepEqual(rs.key, k) {
				taken[i], found = true, true
				keep = append(keep, rs)
				break
			}
		}
		if !found {
			fresh = append(fresh, c)
		}
	}
	for i, rs := range s.running {
		if !taken[i] {
			drop = append(drop, rs)
		}
	}
	s.running = keep
	s.mu.Unlock()
	for _, rs := range drop {
		if rs.stop != nil {
			rs.stop()
			<-rs.done
		}
		// Lines it sent and the pipeline finished since are kept; the
		// few still in flight are read again by a source that takes
		// over its name, never skipped.
		if c, ok := rs.src.(acquire.Checkpointer); ok {
			if e := c.Checkpoint(); e != nil {
				s.log.Warn("position not saved; lines since the last save will be read again", "source", rs.src.Name(), "err", e)
			}
		}
	}
	for _, c := range fresh {
		src, e := s.add(c)
		if e != nil {
			err = fmt.Errorf("start source: %w", e)
			continue
		}
		started = append(started, src)
	}
	return started, len(keep), len(drop), err
}

// SourceStats adapts the sources for the metrics server.
func (s *sourceSet) SourceStats() []metrics.SourceStat {
	srcs := s.list()
	out := make([]metrics.SourceStat, 0, len(srcs))
	for _, src := range srcs {
		st := src.Stats()
		ms := metrics.SourceStat{Name: src.Name(), Lines: st.Lines, Bytes: st.Bytes, Errors: st.Errors, CutLines: st.Cut, Lag: st.Lag, Up: st.LastError == nil}
		if st.LastError != nil {
			ms.Err = st.LastError.Error()
		}
		out = append(out, ms)
	}
	return out
}
