package config

import (
	"slices"
	"testing"

	"github.com/moatsec/moat/internal/model"
)

func TestNeverBlock(t *testing.T) {
	want := map[string]string{
		"bad-proto.bad.yaml": `testdata/neverblock/bad-proto.bad.yaml:4: never_block "25/sctp": want PORT/tcp, PORT/udp or PORT (both), with PORT 1-65535`,
		"zero.bad.yaml":      `testdata/neverblock/zero.bad.yaml:2: never_block "0": want PORT/tcp, PORT/udp or PORT (both), with PORT 1-65535`,
	}
	checkBadConfigs(t, "testdata/neverblock", want)
	cfg, err := Load("testdata/neverblock/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Enforce.NeverBlockPorts()
	wantPorts := []model.PortProto{{Proto: model.ProtoTCP, Port: 22}, {Proto: model.ProtoTCP, Port: 53}, {Proto: model.ProtoUDP, Port: 53}}
	if !slices.Equal(got, wantPorts) {
		t.Errorf("NeverBlockPorts = %v, want %v", got, wantPorts)
	}
}
