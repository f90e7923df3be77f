package config

import (
	"strings"
	"testing"
	"time"
)

func TestFeeds(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte(`feeds:
  - name: partner
    url: https://lists.example.org/partner.txt
  - name: tor-exits
    file: /var/lib/moat/tor.txt
    interval: 10m
    duration: 2h
    max_entries: 5000
    max_bytes: 1048576
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Feed{
		{Name: "partner", URL: "https://lists.example.org/partner.txt", Interval: time.Hour, Duration: 24 * time.Hour, MaxEntries: DefaultFeedMaxEntries, MaxBytes: DefaultFeedMaxBytes},
		{Name: "tor-exits", File: "/var/lib/moat/tor.txt", Interval: 10 * time.Minute, Duration: 2 * time.Hour, MaxEntries: 5000, MaxBytes: 1 << 20},
	}
	if len(cfg.Feeds) != len(want) {
		t.Fatalf("feeds %+v", cfg.Feeds)
	}
	for i := range want {
		if cfg.Feeds[i] != want[i] {
			t.Errorf("feed %d = %+v, want %+v", i, cfg.Feeds[i], want[i])
		}
	}
	// The effective configuration reads back the same.
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("re-parse of the effective config: %v\n%s", err, out)
	}
	for i := range want {
		if again.Feeds[i] != want[i] {
			t.Errorf("round trip: feed %d = %+v", i, again.Feeds[i])
		}
	}
	if def := Default(); len(def.Feeds) != 0 {
		t.Errorf("feeds are on by default: %+v", def.Feeds)
	}
}

func TestFeedsBad(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"feeds:\n  - url: http://127.0.0.1/x\n", "moat.yaml:2: feed name \"\""},
		{"feeds:\n  - name: a b\n    url: http://127.0.0.1/x\n", "moat.yaml:2: feed name \"a b\""},
		{"feeds:\n  - name: a\n    url: http://127.0.0.1/x\n  - name: a\n    file: /x\n", "moat.yaml:4: feed name a: used by another feed"},
		{"feeds:\n  - name: a\n", "moat.yaml:2: feed a: give exactly one of url and file"},
		{"feeds:\n  - name: a\n    url: http://127.0.0.1/x\n    file: /x\n", "moat.yaml:2: feed a: give exactly one"},
		{"feeds:\n  - name: a\n    url: ftp://example.org/x\n", "moat.yaml:3: feed a: url ftp://example.org/x"},
		{"feeds:\n  - name: a\n    file: lists/x.txt\n", "moat.yaml:3: feed a: file lists/x.txt: want an absolute path"},
		{"feeds:\n  - name: a\n    file: /x\n    interval: 1s\n", "moat.yaml:4: feed a: interval 1s"},
		{"feeds:\n  - name: a\n    file: /x\n    interval: 1h\n    duration: 1h\n", "moat.yaml:5: feed a: duration 1h0m0s: want longer than the interval"},
		{"feeds:\n  - name: a\n    file: /x\n    max_entries: -1\n", "moat.yaml:4: feed a: max_entries -1"},
		{"feeds:\n  - name: a\n    file: /x\n    max_bytes: 2000000000\n", "moat.yaml:4: feed a: max_bytes"},
		{"feeds:\n  - name: a\n    file: /x\n    colour: blue\n", "moat.yaml:4"},
	} {
		_, err := Parse("moat.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestFeedURLRedacted(t *testing.T) {
	cfg, err := Parse("moat.yaml", []byte("feeds:\n  - name: p\n    url: https://user:s3cret@lists.example.org/p.txt\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Feeds[0].URL != "https://user:s3cret@lists.example.org/p.txt" {
		t.Fatalf("url %q: the running value must keep the password", cfg.Feeds[0].URL)
	}
	out, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "lists.example.org/p.txt") {
		t.Fatalf("effective config shows the password or lost the URL:\n%s", out)
	}
}
