package setup

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/detect/acquire"
	"github.com/moatsec/moat/packaging"
)

// mixedPlan has a journal entry, a shared file entry and a glob.
func mixedPlan(t *testing.T) Plan {
	t.Helper()
	h := host{files: map[string]string{
		"var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok installed\n\nPackage: postfix\nStatus: install ok installed\n\n" +
			"Package: dovecot-core\nStatus: install ok installed\n\nPackage: nginx\nStatus: install ok installed\n",
		"var/log/mail.log": "x\n",
	}}
	p := planOf(t, h, journalOf("sshd"), nil, PlanOptions{})
	if len(p.Acquisition) != 3 {
		t.Fatalf("want 3 entries, got %q", entryLines(p))
	}
	return p
}

func TestSetupRenderRoundTrip(t *testing.T) {
	p := mixedPlan(t)
	data, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := acquire.LoadConfig(OwnFile, data)
	if err != nil {
		t.Fatalf("the rendered file does not load: %v\n%s", err, data)
	}
	type view struct {
		Name, Source, Type string
		Inputs             []string
	}
	var want, got []view
	for _, e := range p.Acquisition {
		want = append(want, view{e.Name, e.Source, e.Type, append(e.Filenames, e.JournalFilter...)})
	}
	for _, c := range cs {
		got = append(got, view{c.Name, c.Source, c.Labels["type"], append(c.Patterns(), c.JournalctlFilter...)})
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("loaded back (-plan +file):\n%s\n%s", d, data)
	}
	if !strings.Contains(string(data), "# postfix, dovecot: package postfix, log /var/log/mail.log, package dovecot-core\n") {
		t.Errorf("the shared reader's comment is missing:\n%s", data)
	}
}

func TestSetupRenderHostileEvidence(t *testing.T) {
	p := Plan{Acquisition: []Entry{{
		Name: "setup-nginx", Services: []string{"nginx"}, Source: acquire.KindFile, Type: "nginx",
		Filenames: []string{"/var/log/nginx/*access*.log"},
		Evidence:  []string{"package nginx", "log /var/log/nginx/a\nsource: journalctl\n#-access.log"},
	}}}
	data, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := acquire.LoadConfig(OwnFile, data)
	if err != nil || len(cs) != 1 || cs[0].Source != acquire.KindFile {
		t.Fatalf("a newline in a file name changed the entry: %v %+v\n%s", err, cs, data)
	}
}

func TestSetupWriteReplacesOwnFile(t *testing.T) {
	dir := acquisDir(t, map[string]string{"admin.yaml": "source: file\nfilenames: [/var/log/app.log]\nlabels:\n  type: syslog\n"})
	p := mixedPlan(t)
	written, err := Write(dir, p, Existing{})
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, OwnFile)
	if d := cmp.Diff([]string{own}, written); d != "" {
		t.Errorf("written (-want +got):\n%s", d)
	}
	cs, err := acquire.LoadConfigDir(dir)
	if err != nil || len(cs) != 4 {
		t.Fatalf("the directory loads %d entries, %v", len(cs), err)
	}
	if st, err := os.Stat(own); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode of %s: %v %v", own, st.Mode(), err)
	}

	// A plan with nothing to add empties setup's file rather than
	// leaving its old readers beside the new ones.
	if _, err := Write(dir, Plan{}, Existing{}); err != nil {
		t.Fatal(err)
	}
	if cs, err = acquire.LoadConfigDir(dir); err != nil || len(cs) != 1 {
		t.Errorf("after an empty plan: %d entries, %v", len(cs), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("files left in %s: %v", dir, ents)
	}
}

func TestSetupWriteNothingToDo(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "acquis.d")
	if w, err := Write(missing, Plan{}, Existing{}); err != nil || w != nil {
		t.Errorf("empty plan, missing dir: %v %v", w, err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("an empty plan created %s", missing)
	}
	dir := acquisDir(t, nil)
	if w, err := Write(dir, Plan{}, Existing{}); err != nil || w != nil {
		t.Errorf("empty plan, no own file: %v %v", w, err)
	}
}

// TestSetupWriteCarriesFallback: with no acquisition directory the daemon
// reads the shipped one; creating the directory must keep those entries.
func TestSetupWriteCarriesFallback(t *testing.T) {
	shipped, err := fs.Sub(packaging.Files, "acquis.d")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "etc/moat/acquis.d")
	ex, err := LoadExisting(dir, shipped)
	if err != nil {
		t.Fatal(err)
	}
	h := host{files: map[string]string{"var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok installed\n\nPackage: nginx\nStatus: install ok installed\n"}}
	inv, err := Detect(Catalog(), DetectOptions{Root: h.build(t), Journal: journalOf("sshd")})
	if err != nil {
		t.Fatal(err)
	}
	p := BuildPlan(Catalog(), inv, PlanOptions{Existing: ex, Loaded: shippedLoaded})
	if d := cmp.Diff([]string{"sshd configured journalctl by sshd.yaml:4", "nginx add file"}, statusLines(p)); d != "" {
		t.Errorf("services (-want +got):\n%s", d)
	}
	if rb := p.Services[0].ReadBy; rb != FallbackLabel+"sshd.yaml:4" {
		t.Errorf("read by %q: the fallback's file is not labelled", rb)
	}
	if d := cmp.Diff([]string{"sshd.yaml"}, p.Carry); d != "" {
		t.Errorf("carry (-want +got):\n%s", d)
	}
	written, err := Write(dir, p, ex)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{filepath.Join(dir, OwnFile), filepath.Join(dir, "sshd.yaml")}, written); d != "" {
		t.Errorf("written (-want +got):\n%s", d)
	}
	cs, err := acquire.LoadConfigDir(dir)
	if err != nil || len(cs) != 2 {
		t.Fatalf("created directory: %d entries, %v", len(cs), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 1 {
		t.Errorf("left beside the directory: %v", ents)
	}
	// A second run finds the directory and reads the carried file in it.
	ex, err = LoadExisting(dir, shipped)
	if err != nil || ex.Carry != nil || !ex.Own || len(ex.Configs) != 1 {
		t.Errorf("second run: %+v %v", ex, err)
	}
}

// TestSetupWriteRefusedKeepsOldFile: a result the daemon would refuse
// (two entries of one name) is not left in place.
func TestSetupWriteRefusedKeepsOldFile(t *testing.T) {
	dir := acquisDir(t, map[string]string{"admin.yaml": "name: setup-nginx\nsource: file\nfilenames: [/var/log/app.log]\nlabels:\n  type: syslog\n"})
	old := []byte("# an earlier run\n")
	own := filepath.Join(dir, OwnFile)
	if err := os.WriteFile(own, old, 0o644); err != nil {
		t.Fatal(err)
	}
	p := mixedPlan(t) // built without the admin file: its nginx entry takes the name
	if _, err := Write(dir, p, Existing{}); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("Write with a clashing name: %v", err)
	}
	if b, _ := os.ReadFile(own); string(b) != string(old) {
		t.Errorf("the earlier file was not put back: %q", b)
	}
}

// TestSetupWriteNoCarryWithoutEntries: when the fallback reads all there
// is, setup neither creates the directory nor lists files to carry.
func TestSetupWriteNoCarryWithoutEntries(t *testing.T) {
	shipped, err := fs.Sub(packaging.Files, "acquis.d")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "acquis.d")
	ex, err := LoadExisting(dir, shipped)
	if err != nil {
		t.Fatal(err)
	}
	p := BuildPlan(Catalog(), Inventory{Packages: map[string]bool{"openssh-server": true}}, PlanOptions{Existing: ex, Loaded: shippedLoaded})
	if len(p.Acquisition) != 0 || p.Carry != nil {
		t.Fatalf("plan %+v", p)
	}
	if w, err := Write(dir, p, ex); err != nil || w != nil {
		t.Errorf("Write: %v %v", w, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s created: %v", dir, err)
	}
}
