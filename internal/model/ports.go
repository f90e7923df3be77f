package model

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Transport protocols a port-scoped ban or a never-blocked port can name,
// as IANA protocol numbers (what the kernel compares).
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// MaxPorts bounds the ports of one decision: each becomes a kernel element
// per protocol, and a decision is a service's ban, not a port scan's.
const MaxPorts = 64

// ErrBadPorts is wrapped by every error about a port list or protocol.
var ErrBadPorts = errors.New("bad ports")

// PortScoped reports whether the decision bans only some ports, so the
// kernel must match the destination port as well as the source.
func (d Decision) PortScoped() bool { return len(d.Ports) > 0 }

// Protocols returns the protocol numbers a port-scoped decision covers: the
// one it names, or TCP and UDP when it names none.
func (d Decision) Protocols() []uint8 {
	switch d.Protocol {
	case "tcp":
		return []uint8{ProtoTCP}
	case "udp":
		return []uint8{ProtoUDP}
	}
	return []uint8{ProtoTCP, ProtoUDP}
}

// ParsePorts reads a comma-separated port list ("25,465"). The result is
// sorted and without duplicates; an empty string gives nil.
func ParsePorts(s string) ([]uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []uint16
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w: %q: want port numbers 1-65535 separated by commas", ErrBadPorts, s)
		}
		out = append(out, uint16(n))
	}
	return NormalizePorts(out)
}

// NormalizePorts sorts ports and drops duplicates, and refuses port 0 and
// lists longer than MaxPorts.
func NormalizePorts(ps []uint16) ([]uint16, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	ps = slices.Clone(ps)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	if ps[0] == 0 {
		return nil, fmt.Errorf("%w: port 0", ErrBadPorts)
	}
	if len(ps) > MaxPorts {
		return nil, fmt.Errorf("%w: %d ports, at most %d", ErrBadPorts, len(ps), MaxPorts)
	}
	return ps, nil
}

// FormatPorts is the inverse of ParsePorts: "25,465", "" for none.
func FormatPorts(ps []uint16) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	return b.String()
}

// CheckProtocol accepts the protocol of a decision: "tcp", "udp", or ""
// (both). A protocol needs ports: moat bans a service, not a protocol.
func CheckProtocol(proto string, ports []uint16) error {
	switch proto {
	case "", "tcp", "udp":
	default:
		return fmt.Errorf("%w: protocol %q: want tcp or udp", ErrBadPorts, proto)
	}
	if proto != "" && len(ports) == 0 {
		return fmt.Errorf("%w: protocol %q without ports", ErrBadPorts, proto)
	}
	return nil
}

// PortProto is one transport port of one protocol, such as 22/tcp.
type PortProto struct {
	Proto uint8
	Port  uint16
}

func (p PortProto) String() string {
	name := "tcp"
	if p.Proto == ProtoUDP {
		name = "udp"
	}
	return strconv.Itoa(int(p.Port)) + "/" + name
}

// ParsePortProtos reads never-blocked ports: "22/tcp", "53/udp", or a bare
// "22" meaning both TCP and UDP.
func ParsePortProtos(items []string) ([]PortProto, error) {
	var out []PortProto
	for _, it := range items {
		port, proto, hasProto := strings.Cut(strings.TrimSpace(it), "/")
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w: %q: want PORT/tcp, PORT/udp or PORT", ErrBadPorts, it)
		}
		switch {
		case !hasProto:
			out = append(out, PortProto{ProtoTCP, uint16(n)}, PortProto{ProtoUDP, uint16(n)})
		case proto == "tcp":
			out = append(out, PortProto{ProtoTCP, uint16(n)})
		case proto == "udp":
			out = append(out, PortProto{ProtoUDP, uint16(n)})
		default:
			return nil, fmt.Errorf("%w: %q: protocol %q, want tcp or udp", ErrBadPorts, it, proto)
		}
	}
	slices.SortFunc(out, func(a, b PortProto) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Port) - int(b.Port)
	})
	return slices.Compact(out), nil
}
