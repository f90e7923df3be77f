package acquire

import "testing"

// StateOf names the file each kind of source keeps its position in.
func TestStateOf(t *testing.T) {
	dir := t.TempDir()
	cfgs, err := LoadConfig("auth.yaml", []byte("source: file\nfilenames: [/var/log/auth.log]\nlabels: {type: syslog}\n"))
	if err != nil || len(cfgs) != 1 {
		t.Fatal(cfgs, err)
	}
	cfg := cfgs[0]
	src, err := New(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	name, path := StateOf(cfg, dir)
	if name != src.Name() || path != src.(*fileSource).statePath || path == "" {
		t.Errorf("StateOf = %q, %q; source %q keeps %q", name, path, src.Name(), src.(*fileSource).statePath)
	}
	if _, path := StateOf(Config{Source: KindSyslog, Name: "net"}, dir); path != "" {
		t.Errorf("syslog state path %q, want none", path)
	}
}
