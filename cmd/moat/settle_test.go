package main

import (
	"testing"
	"time"
)

// TestSettleKeepsOneSourceInOrder: a new alert waits for a pending store
// write of its own source, not for others, and never lets more than
// maxStoring pile up.
func TestSettleKeepsOneSourceInOrder(t *testing.T) {
	pending := func(v string) storingAlert { return storingAlert{value: v, done: make(chan struct{})} }
	a, b := pending("198.18.0.1"), pending("198.18.0.2")
	finished := pending("198.18.0.3")
	close(finished.done)

	got := settle([]storingAlert{a, b, finished}, "198.18.0.9")
	if len(got) != 2 || got[0].value != a.value || got[1].value != b.value {
		t.Fatalf("settle kept %v, want the two pending writes of other sources", got)
	}

	returned := make(chan []storingAlert)
	go func() { returned <- settle([]storingAlert{a, b}, a.value) }()
	select {
	case <-returned:
		t.Fatal("settle returned while the same source's write was pending")
	case <-time.After(50 * time.Millisecond):
	}
	close(a.done)
	if got := <-returned; len(got) != 1 || got[0].value != b.value {
		t.Fatalf("after the write ended, settle kept %v, want only the other source", got)
	}

	var full []storingAlert
	for range maxStoring {
		full = append(full, pending("198.18.1.1"))
	}
	go func() { returned <- settle(full, "198.18.2.2") }()
	select {
	case <-returned:
		t.Fatalf("settle returned with %d writes pending", maxStoring)
	case <-time.After(50 * time.Millisecond):
	}
	close(full[0].done)
	if got := <-returned; len(got) != maxStoring-1 {
		t.Fatalf("settle kept %d pending writes, want %d", len(got), maxStoring-1)
	}
}
