package grok

// The syslog-logs parser runs ^%{SYSLOGLINE} on every line, and the NFA
// Go's regexp needs for it costs microseconds. fastSyslogLine computes the
// same captures for the common RFC 3164 shape
//
//	Mmm dd hh:mm:ss host prog[pid]: message
//	Mmm dd hh:mm:ss host prog: message
//
// by following the path the regexp prefers, and gives up (ok=false) on
// anything else, which the next tier then takes. FuzzSyslogFastPath
// checks that it agrees with the regexp.

// syslogDefs are the definitions the fast path reproduces; a pattern dir
// that changes any of them disables it.
var syslogDefs = map[string]string{
	"SYSLOGLINE":      `%{SYSLOGBASE2} %{GREEDYDATA:message}`,
	"SYSLOGBASE2":     `(?:%{SYSLOGTIMESTAMP:timestamp}|%{TIMESTAMP_ISO8601:timestamp8601}) (?:%{SYSLOGFACILITY} )?%{SYSLOGHOST:logsource}+(?: %{SYSLOGPROG}:|)`,
	"SYSLOGTIMESTAMP": basePatterns["SYSLOGTIMESTAMP"],
	"MONTH":           basePatterns["MONTH"],
	"MONTHDAY":        basePatterns["MONTHDAY"],
	"TIME":            basePatterns["TIME"],
	"HOUR":            basePatterns["HOUR"],
	"MINUTE":          basePatterns["MINUTE"],
	"SECOND":          basePatterns["SECOND"],
	"SYSLOGHOST":      basePatterns["SYSLOGHOST"],
	"IPORHOST":        basePatterns["IPORHOST"],
	"HOSTNAME":        basePatterns["HOSTNAME"],
	"IP":              basePatterns["IP"],
	"SYSLOGPROG":      basePatterns["SYSLOGPROG"],
	"PROG":            basePatterns["PROG"],
	"POSINT":          basePatterns["POSINT"],
	"GREEDYDATA":      basePatterns["GREEDYDATA"],
}

// standardSyslog reports whether SYSLOGLINE means here what the fast path
// reproduces.
func (g *Library) standardSyslog() bool {
	return g.sameExpansion(withDefs(syslogDefs), "%{SYSLOGLINE}")
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

// isProg is PROG's class: printable ASCII but '[' and ']'.
func isProg(c byte) bool { return c >= 0x21 && c <= 0x7e && c != '[' && c != ']' }

func fastSyslogLine(s string, parsed map[string]string) (matched, ok bool) {
	if len(s) < 17 || s[3] != ' ' {
		return false, false
	}
	known := false
	for _, m := range months {
		if s[:3] == m {
			known = true
			break
		}
	}
	if !known {
		return false, false
	}
	i := 4
	for i < len(s) && s[i] == ' ' {
		i++
	}
	// MONTHDAY, then a space.
	ds := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	switch day := s[ds:i]; {
	case len(day) == 1 && day[0] >= '1':
	case len(day) == 2 && (day[0] == '0' && day[1] >= '1' || day[0] == '1' || day[0] == '2' || day[0] == '3' && day[1] <= '1'):
	default:
		return false, false
	}
	// hh:mm:ss exactly, then a space.
	if i+9 > len(s) || s[i] != ' ' {
		return false, false
	}
	t := s[i+1 : i+9]
	if !(isDigit(t[0]) && isDigit(t[1]) && t[2] == ':' && t[3] >= '0' && t[3] <= '5' && isDigit(t[4]) && t[5] == ':' && t[6] >= '0' && t[6] <= '5' && isDigit(t[7])) {
		return false, false
	}
	if t[0] > '2' || t[0] == '2' && t[1] > '3' {
		return false, false
	}
	i += 9
	if i >= len(s) || s[i] != ' ' {
		return false, false
	}
	timestamp := s[:i]
	i++
	// Host: letters first, dotted labels of [A-Za-z0-9-] starting alnum,
	// at most 63 long, optional final dot, then a space.
	hs := i
	if i >= len(s) || !isAlpha(s[i]) {
		return false, false
	}
	label := 0
	for i < len(s) && s[i] != ' ' {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return false, false
			}
			label = 0
		case isAlnum(c) || c == '-' && label > 0:
			label++
			if label > 63 {
				return false, false
			}
		default:
			return false, false
		}
		i++
	}
	if i >= len(s) || s[i-1] == '-' {
		return false, false
	}
	host := s[hs:i]
	if len(host) >= 2 && host[len(host)-2] == '.' && host[len(host)-1] == '.' {
		return false, false
	}
	i++ // the space
	// PROG run.
	ps := i
	for i < len(s) && isProg(s[i]) {
		i++
	}
	run := s[ps:i]
	var prog, pid string
	switch {
	case len(run) > 0 && i < len(s) && s[i] == '[':
		j := i + 1
		if j >= len(s) || s[j] < '1' || s[j] > '9' {
			return false, false
		}
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j+2 >= len(s) || s[j] != ']' || s[j+1] != ':' || s[j+2] != ' ' {
			return false, false
		}
		prog, pid = run, s[i+1:j]
		i = j + 3
	case len(run) >= 2 && run[len(run)-1] == ':' && i < len(s) && s[i] == ' ':
		prog = run[:len(run)-1]
		i++
	default:
		return false, false
	}
	msg := s[i:]
	if !asciiLine(msg) {
		return false, false
	}
	parsed["timestamp"] = timestamp
	parsed["timestamp8601"] = ""
	parsed["facility"] = ""
	parsed["priority"] = ""
	parsed["logsource"] = host
	parsed["program"] = prog
	parsed["pid"] = pid
	parsed["message"] = msg
	return true, true
}

// asciiLine reports whether s is ASCII without a newline, eight bytes at
// a time: the test every syslog message takes.
func asciiLine(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		nl := w ^ ones*'\n' // a zero byte where s has a newline
		if (w|(nl-ones)&^nl)&highs != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] == '\n' || s[i] >= 0x80 {
			return false
		}
	}
	return true
}
