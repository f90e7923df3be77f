package allowlist

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"time"
)

// Session is a login on this host, read from utmp.
type Session struct {
	User, Line, Host string
	Addr             netip.Addr
	PID              int32
	Start            time.Time
}

// The glibc struct utmp layout on Linux (64-bit and 32-bit alike, with
// __WORDSIZE_TIME64_COMPAT32): a record is 384 bytes.
const (
	utmpSize     = 384
	userProcess  = 7
	offPID       = 4
	offLine      = 8
	offUser      = 44
	offHost      = 76
	offTimeSec   = 340
	offAddr      = 348
	lineLen      = 32
	userLen      = 32
	hostLen      = 256
	maxUTMPBytes = 16 << 20
)

// ReadUTMP returns the live login sessions of a utmp file that came from
// an address (local console logins have none).
func ReadUTMP(path string) ([]Session, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read login sessions: %w", err)
	}
	if len(data) > maxUTMPBytes {
		return nil, fmt.Errorf("read login sessions: %s is over %d bytes", path, maxUTMPBytes)
	}
	return ParseUTMP(data), nil
}

// ParseUTMP decodes utmp records; a trailing partial record (the file
// read while being written) is ignored.
func ParseUTMP(data []byte) []Session {
	var out []Session
	for ; len(data) >= utmpSize; data = data[utmpSize:] {
		r := data[:utmpSize]
		if int16(binary.NativeEndian.Uint16(r[0:2])) != userProcess {
			continue
		}
		s := Session{
			PID:   int32(binary.NativeEndian.Uint32(r[offPID:])),
			Line:  cstring(r[offLine : offLine+lineLen]),
			User:  cstring(r[offUser : offUser+userLen]),
			Host:  cstring(r[offHost : offHost+hostLen]),
			Start: time.Unix(int64(int32(binary.NativeEndian.Uint32(r[offTimeSec:]))), 0).UTC(),
		}
		s.Addr = utmpAddr(r[offAddr:offAddr+16], s.Host)
		if s.Addr.IsValid() && !s.Addr.IsUnspecified() {
			out = append(out, s)
		}
	}
	return out
}

// utmpAddr is the session's address: ut_addr_v6 (network order, IPv4 in
// its first word alone), else the host field when it is an address.
func utmpAddr(b []byte, host string) netip.Addr {
	if !allZero(b[4:]) {
		return netip.AddrFrom16([16]byte(b)).Unmap()
	}
	if !allZero(b[:4]) {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.WithZone("").Unmap()
	}
	return netip.Addr{}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
