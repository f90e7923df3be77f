package allowlist

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// utmpRecord builds one record as glibc writes it.
type utmpRecord struct {
	typ              int16
	pid              int32
	line, user, host string
	addr             netip.Addr // zero: ut_addr_v6 left empty
	sec              int32
}

func (r utmpRecord) bytes() []byte {
	b := make([]byte, utmpSize)
	binary.NativeEndian.PutUint16(b[0:], uint16(r.typ))
	binary.NativeEndian.PutUint32(b[offPID:], uint32(r.pid))
	copy(b[offLine:offLine+lineLen], r.line)
	copy(b[offUser:offUser+userLen], r.user)
	copy(b[offHost:offHost+hostLen], r.host)
	binary.NativeEndian.PutUint32(b[offTimeSec:], uint32(r.sec))
	if r.addr.Is4() {
		a := r.addr.As4()
		copy(b[offAddr:], a[:])
	} else if r.addr.Is6() {
		a := r.addr.As16()
		copy(b[offAddr:], a[:])
	}
	return b
}

func writeUTMP(t *testing.T, path string, rs ...utmpRecord) {
	t.Helper()
	var data []byte
	for _, r := range rs {
		data = append(data, r.bytes()...)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

const bootTime = 2 // BOOT_TIME, a record that is not a login

func TestParseUTMP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "utmp")
	writeUTMP(t, path,
		utmpRecord{typ: bootTime, line: "~", user: "reboot", host: "6.1.0", sec: 1764547200},
		utmpRecord{typ: userProcess, pid: 812, line: "pts/0", user: "alice", host: "198.18.4.4", addr: netip.MustParseAddr("198.18.4.4"), sec: 1764547300},
		utmpRecord{typ: userProcess, pid: 813, line: "pts/1", user: "bob", host: "2001:db8::b", addr: netip.MustParseAddr("2001:db8::b"), sec: 1764547400},
		// Some login programs fill only ut_host.
		utmpRecord{typ: userProcess, pid: 814, line: "pts/2", user: "carol", host: "198.18.4.5", sec: 1764547500},
		// A console login has no address; a named host is not resolved.
		utmpRecord{typ: userProcess, pid: 815, line: "tty1", user: "root", sec: 1764547600},
		utmpRecord{typ: userProcess, pid: 816, line: "pts/3", user: "dave", host: "laptop.example.org", sec: 1764547700},
		// A logged out session.
		utmpRecord{typ: 8, pid: 817, line: "pts/4", user: "", host: "198.18.4.6", addr: netip.MustParseAddr("198.18.4.6")},
	)
	// A record being written when the file was read.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	got, err := ReadUTMP(path)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s int64) time.Time { return time.Unix(s, 0).UTC() }
	want := []Session{
		{User: "alice", Line: "pts/0", Host: "198.18.4.4", Addr: netip.MustParseAddr("198.18.4.4"), PID: 812, Start: at(1764547300)},
		{User: "bob", Line: "pts/1", Host: "2001:db8::b", Addr: netip.MustParseAddr("2001:db8::b"), PID: 813, Start: at(1764547400)},
		{User: "carol", Line: "pts/2", Host: "198.18.4.5", Addr: netip.MustParseAddr("198.18.4.5"), PID: 814, Start: at(1764547500)},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
		t.Errorf("sessions (-want +got):\n%s", d)
	}
	if _, err := ReadUTMP(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing utmp file read without error")
	}
}

// A live session's address is never banned, and the refusal is counted;
// once the session ends, the address is no longer protected.
func TestSessionsProtect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "utmp")
	alice := utmpRecord{typ: userProcess, pid: 812, line: "pts/0", user: "alice", host: "198.18.4.4", addr: netip.MustParseAddr("198.18.4.4"), sec: 1764547300}
	writeUTMP(t, path, alice)
	m := New(Config{UTMP: path})
	ctx := context.Background()
	m.Step(ctx)
	err := m.Protect(pfx("198.18.4.0/24"))
	if err == nil {
		t.Fatal("a range over a live session's address was not refused")
	}
	if want := "198.18.4.4/32 has a login session on this host (alice on pts/0 since 2025-12-01T00:01:40Z)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if s := m.Stats(); s.SessionRefused != 1 || s.Entries[SourceSession] != 1 {
		t.Errorf("stats %+v, want one session and one refusal", s)
	}
	if ms := m.Check(pfx("198.18.4.4/32")); len(ms) != 1 || ms[0].Source != SourceSession || !strings.Contains(ms[0].Where(), path) {
		t.Errorf("check %+v", ms)
	}

	alice.typ = 8 // logged out
	writeUTMP(t, path, alice, utmpRecord{typ: bootTime})
	m.Step(ctx)
	if err := m.Protect(pfx("198.18.4.4/32")); err != nil {
		t.Errorf("after logout: %v", err)
	}

	// Off, sessions protect nothing.
	writeUTMP(t, path, utmpRecord{typ: userProcess, line: "pts/0", user: "alice", addr: netip.MustParseAddr("198.18.4.4")})
	off := New(Config{})
	off.Step(ctx)
	if err := off.Protect(pfx("198.18.4.4/32")); err != nil {
		t.Errorf("sessions off: %v", err)
	}
}
