package litscan

import "testing"

var benchMsgs = []string{
	"Invalid user admin from 198.18.3.4 port 52344",
	"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.18.3.4  user=root",
	"pam_unix(sshd:session): session opened for user carol by (uid=0)",
	"Accepted publickey for ivan from 2001:db8:1170:7599::47e6 port 9007 ssh2: ED25519 SHA256:Z2X1hg60hHkVhDb8hYWDwkDxh5OnKGR5xCyXK2+Sg4R",
	"Received disconnect from 198.18.3.4 port 52344:11: Bye Bye [preauth]",
	"Failed password for invalid user admin from 198.18.3.4 port 52344 ssh2",
}

func BenchmarkPairsFind(b *testing.B) {
	p := NewPairs([][]string{{"Failed "}, {"Disconnected from "}, {"Connection "}, {"Disconnected from "}, {"Bad protocol version identification '"}, {"Invalid user"}, {"Failed keyboard-interactive/pam for invalid user "}, {" not allowed because not listed in AllowUsers", "User "}, {"banner exchange: Connection from "}, {"Failed password for invalid user "}, {"(sshd:auth): authentication failure; logname= uid="}, {") on obfuscated handshake from ", "Magic value check failed ("}, {"Unable to negotiate with "}, {"Timeout before authentication for "}, {": message authentication code incorrect [preauth]"}, {"refused connect from"}})
	var acc uint64
	for b.Loop() {
		for _, m := range benchMsgs {
			acc += p.Find(m)
		}
	}
	_ = acc
}
