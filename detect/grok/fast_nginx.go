package grok

import (
	"regexp/syntax"
	"strings"
)

// nginx-logs runs nginxAccess on every access log line; with IPORHOST
// twice (IPV6 and HOSTNAME unrolled) the regexp is thousands of
// instructions and Go runs it as an NFA. The fields are delimited by
// characters the sub-patterns cannot hold, so the captures of a line that
// matches from its first byte can be read by splitting, each field then
// checked against its own small regexp. Anything unusual goes to the
// next tier (ok=false); FuzzNginxFastPath checks that it agrees with the
// regexp.
const nginxAccess = `(%{IPORHOST:target_fqdn}(:%{INT:port})? )?%{IPORHOST:remote_addr} - (%{NGCUSTOMUSER:remote_user} )?\[%{HTTPDATE:time_local}\] "%{WORD:verb} %{DATA:request} HTTP/%{NUMBER:http_version}" %{NUMBER:status} %{NUMBER:body_bytes_sent} "%{NOTDQUOTE:http_referer}" "%{NOTDQUOTE:http_user_agent}"( %{NUMBER:request_length} %{NUMBER:request_time} \[%{DATA:proxy_upstream_name}\] \[%{DATA:proxy_alternative_upstream_name}\])?`

// nginxAccessNGUser is the same line as an earlier nginx-logs reads it,
// the one Debian's crowdsec package ships: no port after target_fqdn, and
// a user of NGUSER (no digits) inside an optional group before a space
// that stays.
const nginxAccessNGUser = `(%{IPORHOST:target_fqdn} )?%{IPORHOST:remote_addr} - (%{NGUSER:remote_user})? \[%{HTTPDATE:time_local}\] "%{WORD:verb} %{DATA:request} HTTP/%{NUMBER:http_version}" %{NUMBER:status} %{NUMBER:body_bytes_sent} "%{NOTDQUOTE:http_referer}" "%{NOTDQUOTE:http_user_agent}"( %{NUMBER:request_length} %{NUMBER:request_time} \[%{DATA:proxy_upstream_name}\] \[%{DATA:proxy_alternative_upstream_name}\])?`

// nginxShape is what tells the two patterns apart for the fast path.
type nginxShape struct {
	userByte func(byte) bool
	// emptyUser: the user group may match nothing, leaving " - " and
	// then " [" (nginxAccessNGUser); else a user is followed by its own
	// space, or absent with "[" right after " - ".
	emptyUser bool
	// port: the pattern captures port.
	port bool
}

// nginxVariants are the patterns the fast path reads, with the
// pattern_syntax and pattern-dir definitions it assumes beside the
// built-in patterns.
var nginxVariants = map[string]struct {
	defs  map[string]string
	shape nginxShape
}{
	nginxAccess: {
		defs:  map[string]string{"NGCUSTOMUSER": `[a-zA-Z0-9\.\@\-\+_%]+`, "NOTDQUOTE": `[^"]*`},
		shape: nginxShape{userByte: isNgCustomUser, port: true},
	},
	nginxAccessNGUser: {
		defs:  map[string]string{"NGUSERNAME": `[a-zA-Z\.\@\-\+_%]+`, "NGUSER": `%{NGUSERNAME}`, "NOTDQUOTE": `[^"]*`},
		shape: nginxShape{userByte: isNgUser, emptyUser: true},
	},
}

// nginxFast builds the fast path for src when it is one of
// nginxVariants and expands here as with the definitions it assumes,
// else nil.
func (g *Library) nginxFast(src string) func(string, map[string]string) (bool, bool) {
	vr, ok := nginxVariants[src]
	if !ok || !g.sameExpansion(withDefs(vr.defs), src) {
		return nil
	}
	full := func(p string) *tokenCheck {
		var names []string
		rx, err := g.expand(p, &names, 0, expandFull)
		if err != nil {
			return nil
		}
		rx = `^(?:` + rx + `)$`
		if _, err := syntax.Parse(rx, syntax.Perl); err != nil {
			return nil
		}
		return newTokenCheck(rx, false)
	}
	host, date := full("%{IPORHOST}"), full("%{HTTPDATE}")
	if host == nil || date == nil {
		return nil
	}
	shape := vr.shape
	return func(s string, parsed map[string]string) (bool, bool) {
		return fastNginxAccess(s, parsed, host, date, shape)
	}
}

func isWord(c byte) bool { return isAlnum(c) || c == '_' }

func isNgCustomUser(c byte) bool { return isDigit(c) || isNgUser(c) }

func isNgUser(c byte) bool {
	return isAlpha(c) || c == '.' || c == '@' || c == '-' || c == '+' || c == '_' || c == '%'
}

// isNumber reports whether s is all of BASE10NUM.
func isNumber(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	d := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == d {
		// Only ".digits", without a sign.
		if d != 0 || len(s) < 2 || s[0] != '.' {
			return false
		}
		for _, c := range []byte(s[1:]) {
			if !isDigit(c) {
				return false
			}
		}
		return true
	}
	if i == len(s) {
		return true
	}
	if s[i] != '.' || i+1 == len(s) {
		return false
	}
	for i++; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func fastNginxAccess(s string, parsed map[string]string, host, date *tokenCheck, shape nginxShape) (matched, ok bool) {
	// remote_addr is the first token when " - " follows it: the optional
	// target_fqdn group would need an address where "-" stands.
	// An IPv6 zone (%.+) can run past spaces: such lines go to the regexp.
	sp := strings.IndexByte(s, ' ')
	if sp <= 0 || !strings.HasPrefix(s[sp:], " - ") || strings.IndexByte(s[:sp], '%') >= 0 || !host.ok(s[:sp]) {
		return false, false
	}
	addr := s[:sp]
	i := sp + 3
	user := ""
	if shape.emptyUser || (i < len(s) && s[i] != '[') {
		j := i
		for j < len(s) && shape.userByte(s[j]) {
			j++
		}
		if (j == i && !shape.emptyUser) || !strings.HasPrefix(s[j:], " [") {
			return false, false
		}
		user = s[i:j]
		i = j + 1
	}
	if i >= len(s) || s[i] != '[' {
		return false, false
	}
	e := strings.IndexByte(s[i:], ']')
	if e < 0 {
		return false, false
	}
	when := s[i+1 : i+e]
	if !date.ok(when) {
		return false, false
	}
	i += e + 1
	if !strings.HasPrefix(s[i:], ` "`) {
		return false, false
	}
	i += 2
	j := i
	for j < len(s) && isWord(s[j]) {
		j++
	}
	if j == i || j >= len(s) || s[j] != ' ' {
		return false, false
	}
	verb := s[i:j]
	i = j + 1
	// DATA is lazy: the request ends at the first " HTTP/" after which
	// the rest matches; if the rest does not, the regexp decides.
	h := strings.Index(s[i:], " HTTP/")
	if h < 0 {
		return false, false
	}
	request := s[i : i+h]
	i += h + len(" HTTP/")
	q := strings.IndexByte(s[i:], '"')
	if q < 0 || !isNumber(s[i:i+q]) {
		return false, false
	}
	version := s[i : i+q]
	i += q + 1
	if i >= len(s) || s[i] != ' ' {
		return false, false
	}
	i++
	var nums [2]string
	for k := range nums {
		e := strings.IndexByte(s[i:], ' ')
		if e < 0 || !isNumber(s[i:i+e]) {
			return false, false
		}
		nums[k] = s[i : i+e]
		i += e + 1
	}
	var quoted [2]string
	for k := range quoted {
		if i >= len(s) || s[i] != '"' {
			return false, false
		}
		e := strings.IndexByte(s[i+1:], '"')
		if e < 0 {
			return false, false
		}
		quoted[k] = s[i+1 : i+1+e]
		i += e + 2
		if k == 0 {
			if i >= len(s) || s[i] != ' ' {
				return false, false
			}
			i++
		}
	}
	// The optional upstream group: only lines that end here.
	if i != len(s) {
		return false, false
	}
	parsed["target_fqdn"] = ""
	if shape.port {
		parsed["port"] = ""
	}
	parsed["remote_addr"] = addr
	parsed["remote_user"] = user
	parsed["time_local"] = when
	parsed["verb"] = verb
	parsed["request"] = request
	parsed["http_version"] = version
	parsed["status"] = nums[0]
	parsed["body_bytes_sent"] = nums[1]
	parsed["http_referer"] = quoted[0]
	parsed["http_user_agent"] = quoted[1]
	parsed["request_length"] = ""
	parsed["request_time"] = ""
	parsed["proxy_upstream_name"] = ""
	parsed["proxy_alternative_upstream_name"] = ""
	return true, true
}
