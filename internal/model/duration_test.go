package model

import (
	"errors"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		forever bool
		bad     bool
	}{
		{in: "4h", want: 4 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "forever", forever: true},
		{in: "Forever", forever: true},
		{in: "", bad: true},
		{in: "0s", bad: true},
		{in: "-1h", bad: true},
		{in: "d", bad: true},
		{in: "xd", bad: true},
		{in: "1d-30h", bad: true},
		{in: "someday", bad: true},
		{in: "99999999d", bad: true},
	} {
		d, forever, err := ParseDuration(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrDuration) {
				t.Errorf("%q: got %s, %v, %v; want ErrDuration", tc.in, d, forever, err)
			}
			continue
		}
		if err != nil || d != tc.want || forever != tc.forever {
			t.Errorf("%q: got %s, %v, %v; want %s, %v", tc.in, d, forever, err, tc.want, tc.forever)
		}
		if !forever {
			back, _, err := ParseDuration(FormatDuration(d))
			if err != nil || back != d {
				t.Errorf("%q: FormatDuration %q reads back as %s, %v", tc.in, FormatDuration(d), back, err)
			}
		}
	}
	if got := FormatDuration(0); got != Forever {
		t.Errorf("FormatDuration(0) = %q", got)
	}
}
