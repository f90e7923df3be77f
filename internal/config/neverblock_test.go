package config

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/moatsec/moat/internal/model"
)

func TestNeverBlock(t *testing.T) {
	want := map[string]string{
		"bad-proto.bad.yaml": `testdata/neverblock/bad-proto.bad.yaml:4: never_block "25/sctp": want PORT/tcp, PORT/udp or PORT (both), with PORT 1-65535`,
		"zero.bad.yaml":      `testdata/neverblock/zero.bad.yaml:2: never_block "0": want PORT/tcp, PORT/udp or PORT (both), with PORT 1-65535`,
	}
	files, err := filepath.Glob("testdata/neverblock/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Fatalf("%d bad configs, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		if _, err := Load(f); err == nil || err.Error() != want[filepath.Base(f)] {
			t.Errorf("%s: error %v\nwant %s", f, err, want[filepath.Base(f)])
		}
	}
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
