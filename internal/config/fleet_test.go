package config

import (
	"testing"
)

func TestBadFleetConfigs(t *testing.T) {
	want := map[string]string{
		"plain-http.bad.yaml":         `testdata/fleet/plain-http.bad.yaml:2: server "http://10.0.0.1:8089": plain http off loopback: use https, or the machine password and tokens cross the network in clear`,
		"two-passwords.bad.yaml":      `testdata/fleet/two-passwords.bad.yaml:4: want one of password and password_file`,
		"no-server.bad.yaml":          `testdata/fleet/no-server.bad.yaml:2: machine_id is set but fleet.server is empty: set the server's URL, or remove the fleet section`,
		"unknown-key.bad.yaml":        `testdata/fleet/unknown-key.bad.yaml:4: unknown key "pasword"`,
		"push-batch.bad.yaml":         `testdata/fleet/push-batch.bad.yaml:5: push_batch 0: want 1 to 1000`,
		"scheme.bad.yaml":             `testdata/fleet/scheme.bad.yaml:2: server "ftp://fleet.example": want http(s)://host:port`,
		"server-and-servers.bad.yaml": `testdata/fleet/server-and-servers.bad.yaml:2: server and servers are both set: list every replica under servers`,
		"servers-plain-http.bad.yaml": `testdata/fleet/servers-plain-http.bad.yaml:4: servers[1] "http://10.0.0.2:8089": plain http off loopback: use https, or the machine password and tokens cross the network in clear`,
		"servers-duplicate.bad.yaml":  `testdata/fleet/servers-duplicate.bad.yaml:5: servers[2] "https://a.example:8089/": the same as servers[0]`,
	}
	checkBadConfigs(t, "testdata/fleet", want)
}

func TestFleetConfig(t *testing.T) {
	for _, y := range []string{
		"fleet:\n  server: http://127.0.0.1:8089\n  machine_id: a\n  password: x\n",
		"fleet:\n  server: https://fleet.example:8089/\n  machine_id: a\n  password_file: /etc/moat/fleet.pw\n  push_interval: 50ms\n",
		"fleet:\n  servers: [https://a.example:8089, https://b.example:8089]\n  machine_id: a\n  password: x\n",
	} {
		cfg, err := Parse("moat.yaml", []byte(y))
		if err != nil || !cfg.Fleet.Enabled() {
			t.Errorf("%q: %v (enabled %v)", y, err, cfg.Fleet.Enabled())
		} else if len(cfg.Fleet.URLs()) == 0 {
			t.Errorf("%q: no server URLs", y)
		}
	}
}
