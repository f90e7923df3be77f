package hubstore

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// copyTree copies the test source so a test can change it.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

func openSrc(t *testing.T, path string) *Source {
	t.Helper()
	src, err := OpenSource(path, SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func refs(items []Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Ref())
	}
	return out
}

func actions(changes []Change) map[string]string {
	m := map[string]string{}
	for _, c := range changes {
		m[c.Ref] = c.Action
	}
	return m
}

func TestSourceScan(t *testing.T) {
	src := openSrc(t, "testdata/src")
	if src.Indexed {
		t.Error("a checkout without .index.json reads as indexed")
	}
	if want, _ := filepath.Abs("testdata/src/data"); mustAbs(t, src.Data) != want {
		t.Errorf("data dir = %s, want %s", src.Data, want)
	}
	want := []string{
		"collections/acme/base", "collections/acme/web",
		"parsers/acme/base-enrich", "parsers/acme/web-logs",
		"postoverflows/acme/known-scanners",
		"scenarios/acme/lonely", "scenarios/acme/web-scan",
	}
	if got := refs(src.Items()); !slices.Equal(got, want) {
		t.Errorf("items = %v, want %v", got, want)
	}
	web, err := src.Lookup("acme/web")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(web.Deps, "collections/acme/base") || !slices.Contains(web.Deps, "postoverflows/acme/known-scanners") {
		t.Errorf("acme/web deps = %v", web.Deps)
	}
	sc, err := src.Lookup("scenarios/acme/web-scan")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sc.Data, []string{"bad_paths.txt"}) || len(sc.SHA256) != 64 {
		t.Errorf("web-scan = %+v, want data bad_paths.txt and a sha256", sc)
	}
	if _, err := src.Lookup("acme/nothing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("lookup of a missing item: %v, want ErrNotFound", err)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSourceIndex: with an .index.json the versions and dependencies come
// from it, and the digest from the file.
func TestSourceIndex(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, "testdata/src", dir)
	idx := `{
  "collections": {"acme/base": {"path": "collections/acme/base.yaml", "version": "1.2", "parsers": ["acme/base-enrich"]}},
  "parsers": {
    "acme/base-enrich": {"path": "parsers/s02-enrich/acme/base-enrich.yaml", "stage": "s02-enrich", "version": "0.3"},
    "acme/gone": {"path": "parsers/s01-parse/acme/gone.yaml", "stage": "s01-parse", "version": "0.1"}
  },
  "contexts": {"acme/ctx": {"path": "contexts/acme/ctx.yaml", "version": "0.1"}}
}`
	if err := os.WriteFile(filepath.Join(dir, "hub", ".index.json"), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	src := openSrc(t, dir)
	if !src.Indexed {
		t.Fatal("index not read")
	}
	// The index names files the snapshot lacks (a parser, a context):
	// neither is offered.
	if got, want := refs(src.Items()), []string{"collections/acme/base", "parsers/acme/base-enrich"}; !slices.Equal(got, want) {
		t.Errorf("items = %v, want %v", got, want)
	}
	it, _ := src.Lookup("acme/base-enrich")
	if it.Version != "0.3" || it.Stage != "s02-enrich" {
		t.Errorf("base-enrich = %+v, want version 0.3 in s02-enrich", it)
	}
}

func TestInstallResolvesCollections(t *testing.T) {
	src := openSrc(t, "testdata/src")
	dir := t.TempDir()
	st, err := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	changes, err := st.Install(src, []string{"acme/web"}, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"collections/acme/web": Installed, "collections/acme/base": Installed,
		"parsers/acme/web-logs": Installed, "parsers/acme/base-enrich": Installed,
		"scenarios/acme/web-scan": Installed, "postoverflows/acme/known-scanners": Installed,
		"bad_paths.txt": DataCopied, "patterns/acme": Installed,
	}
	if got := actions(changes); !mapsEqual(got, want) {
		t.Errorf("changes = %v, want %v", got, want)
	}
	for _, p := range []string{
		"hub/parsers/s01-parse/acme/web-logs.yaml", "hub/parsers/s02-enrich/acme/base-enrich.yaml",
		"hub/postoverflows/s01-whitelist/acme/known-scanners.yaml", "hub/scenarios/acme/web-scan.yaml",
		"hub/collections/acme/web.yaml", "hub/collections/acme/base.yaml", "data/bad_paths.txt", "hub/" + StateFile, "hub/patterns/acme",
	} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("after install: %v", err)
		}
	}
	// The state survives a reopen, with what was named marked explicit.
	st, err = Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	recs := st.Records()
	if len(recs) != 6 {
		t.Fatalf("records = %+v, want 6", recs)
	}
	for _, r := range recs {
		srcItem, _ := src.Lookup(r.Ref())
		if r.SHA256 != srcItem.SHA256 || r.Explicit != (r.Ref() == "collections/acme/web") {
			t.Errorf("record %s: sha %s explicit %v; source sha %s", r.Ref(), r.SHA256, r.Explicit, srcItem.SHA256)
		}
		if s, _ := st.FileState(r); s != StateOK {
			t.Errorf("%s is %s right after install", r.Ref(), s)
		}
	}
	// Installing again changes nothing.
	changes, err = st.Install(src, []string{"acme/web"}, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Action != Kept {
			t.Errorf("second install: %+v", c)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestInstallMissingData: a data file the source lacks stops the install
// before anything is written, unless allowed.
func TestInstallMissingData(t *testing.T) {
	src := openSrc(t, "testdata/src")
	dir := t.TempDir()
	st, _ := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	_, err := st.Install(src, []string{"acme/lonely"}, InstallOptions{})
	if err == nil || !strings.Contains(err.Error(), "nowhere.txt") {
		t.Fatalf("install with a missing data file: %v, want an error naming nowhere.txt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused install wrote the store: %v", err)
	}
	if _, err := st.Install(src, []string{"acme/lonely"}, InstallOptions{AllowMissingData: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Lookup("acme/lonely"); err != nil {
		t.Error(err)
	}
}

// TestUpgradeKeepsTainted: an item edited in the store is reported
// tainted and kept; the others take the source's new version.
func TestUpgradeKeepsTainted(t *testing.T) {
	srcDir := t.TempDir()
	copyTree(t, "testdata/src", srcDir)
	dir := t.TempDir()
	st, _ := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	if _, err := st.Install(src1(t, srcDir), []string{"acme/web"}, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	// Nothing new: everything is up to date.
	changes, err := st.Upgrade(src1(t, srcDir), nil, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		if c.Action != UpToDate {
			t.Errorf("upgrade from the same source: %+v", c)
		}
	}

	// The source moves on: two files change and the collection gains an item.
	appendTo(t, filepath.Join(srcDir, "hub/scenarios/acme/web-scan.yaml"), "# v2\n")
	appendTo(t, filepath.Join(srcDir, "hub/parsers/s01-parse/acme/web-logs.yaml"), "# v2\n")
	rewrite(t, filepath.Join(srcDir, "hub/collections/acme/web.yaml"), "scenarios:\n  - acme/web-scan\n", "scenarios:\n  - acme/web-scan\n  - acme/extra\n")
	if err := os.WriteFile(filepath.Join(srcDir, "hub/scenarios/acme/extra.yaml"), []byte("type: trigger\nname: acme/extra\nfilter: 'true'\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The admin edits the installed scenario.
	edited := filepath.Join(dir, "hub/scenarios/acme/web-scan.yaml")
	appendTo(t, edited, "# tuned here\n")
	mine, _ := os.ReadFile(edited)

	changes, err = st.Upgrade(src1(t, srcDir), nil, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := actions(changes)
	want := map[string]string{
		"scenarios/acme/web-scan":           Tainted,
		"parsers/acme/web-logs":             Upgraded,
		"collections/acme/web":              Upgraded,
		"collections/acme/base":             UpToDate,
		"parsers/acme/base-enrich":          UpToDate,
		"postoverflows/acme/known-scanners": UpToDate,
		"scenarios/acme/extra":              Installed,
	}
	if !mapsEqual(got, want) {
		t.Errorf("upgrade = %v, want %v", got, want)
	}
	if now, _ := os.ReadFile(edited); string(now) != string(mine) {
		t.Errorf("the edited scenario was overwritten:\n%s", now)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "hub/parsers/s01-parse/acme/web-logs.yaml"))
	if !strings.HasSuffix(string(b), "# v2\n") {
		t.Errorf("web-logs not upgraded:\n%s", b)
	}
	r, _ := st.Lookup("acme/web-scan")
	if s, _ := st.FileState(r); s != StateTainted {
		t.Errorf("edited scenario state %s, want tainted", s)
	}
	if r, _ := st.Lookup("acme/extra"); r.Explicit {
		t.Error("an item an upgraded collection pulled in is marked explicit")
	}

	in, err := st.Inspect(src1(t, srcDir), "acme/web-scan", true)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != StateTainted || in.CurrentSHA256 == in.Installed.SHA256 || len(in.CurrentSHA256) != 64 || !strings.Contains(in.Diff, "\n-# tuned here\n") || !strings.Contains(in.Diff, "\n+# v2\n") {
		t.Errorf("inspect: state %s, diff:\n%s", in.State, in.Diff)
	}
}

func src1(t *testing.T, dir string) *Source { return openSrc(t, dir) }

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func rewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRemove: removing a collection takes the dependencies nothing else
// needs; a tainted one stops it unless forced.
func TestRemove(t *testing.T) {
	src := openSrc(t, "testdata/src")
	dir := t.TempDir()
	st, _ := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	if _, err := st.Install(src, []string{"acme/web", "acme/base-enrich"}, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	appendTo(t, filepath.Join(dir, "hub/parsers/s01-parse/acme/web-logs.yaml"), "# mine\n")
	if _, err := st.Remove([]string{"acme/web"}, RemoveOptions{}); err == nil || !strings.Contains(err.Error(), "tainted") {
		t.Fatalf("removing a collection with a tainted item: %v, want refused", err)
	}
	if len(st.Records()) != 6 {
		t.Fatalf("a refused remove dropped records: %d left", len(st.Records()))
	}
	changes, err := st.Remove([]string{"acme/web"}, RemoveOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	// base-enrich was named at install: it stays, the rest goes.
	if got := refs(recordItems(st.Records())); !slices.Equal(got, []string{"parsers/acme/base-enrich"}) {
		t.Errorf("left after remove: %v (changes %+v)", got, changes)
	}
	if _, err := os.Stat(filepath.Join(dir, "hub/scenarios/acme/web-scan.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("web-scan file left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data/bad_paths.txt")); err != nil {
		t.Errorf("data files stay: %v", err)
	}
	if _, err := st.Remove([]string{"acme/web"}, RemoveOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("removing what is not installed: %v", err)
	}
}

func recordItems(rs []Record) []Item {
	var out []Item
	for _, r := range rs {
		out = append(out, r.Item)
	}
	return out
}

func writeBundle(t testing.TB, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBundle(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	err := filepath.WalkDir("testdata/src", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files["hub-main/"+strings.TrimPrefix(filepath.ToSlash(p), "testdata/src/")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "hub.tar.gz")
	writeBundle(t, good, files)
	src, err := OpenSource(good, SourceOptions{TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(src.Items()) != 7 || src.Data == "" {
		t.Errorf("bundle: %d items, data %q", len(src.Items()), src.Data)
	}
	unpacked := src.Root
	src.Close()
	if _, err := os.Stat(unpacked); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close left the unpacked bundle: %v", err)
	}

	for name, bad := range map[string]map[string]string{
		"escape":   {"hub/scenarios/a/x.yaml": "name: a/x\n", "../evil": "x"},
		"absolute": {"/tmp/evil": "x"},
		"no hub":   {"README": "nothing here"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".tar.gz")
		writeBundle(t, p, bad)
		if _, err := OpenSource(p, SourceOptions{TempDir: dir}); err == nil {
			t.Errorf("bundle %s opened", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "evil")); err == nil {
		t.Error("a bundle entry escaped")
	}
}

// TestDebianSnapshot: every item of Debian's crowdsec hub snapshot is
// offered, with its index version, and the postfix collection installs
// with what it names.
func TestDebianSnapshot(t *testing.T) {
	const snap = "/usr/share/crowdsec/hub"
	if _, err := os.Stat(snap); err != nil {
		t.Skipf("SKIP: %s missing (apt-get install crowdsec installs the hub snapshot): %v", snap, err)
	}
	b, err := os.ReadFile(filepath.Join(snap, ".index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]map[string]struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	src := openSrc(t, snap)
	got := map[string]string{}
	for _, it := range src.Items() {
		got[it.Ref()] = it.Version
	}
	n := 0
	for _, kind := range Kinds {
		for name, e := range idx[kind] {
			n++
			if v, ok := got[kind+"/"+name]; !ok || v != e.Version {
				t.Errorf("%s/%s: offered %v version %q, index says %q", kind, name, ok, v, e.Version)
			}
		}
	}
	if len(got) != n || n == 0 {
		t.Errorf("offered %d items, the index has %d", len(got), n)
	}
	dir := t.TempDir()
	st, _ := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	if _, err := st.Install(src, []string{"crowdsecurity/postfix"}, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"collections/crowdsecurity/postfix", "parsers/crowdsecurity/postfix-logs", "parsers/crowdsecurity/postscreen-logs", "scenarios/crowdsecurity/postfix-spam"} {
		if _, err := st.Lookup(ref); err != nil {
			t.Error(err)
		}
	}
}

// TestPatterns: the source's grok pattern files come with the first
// install; an upgrade replaces the unedited ones and keeps an edited one.
func TestPatterns(t *testing.T) {
	srcDir := t.TempDir()
	copyTree(t, "testdata/src", srcDir)
	dir := t.TempDir()
	st, _ := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	if st.Patterns() != "" {
		t.Fatal("an empty store has patterns")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(srcDir, "patterns", "other"), []byte("OTHER x\n"), 0o644))
	must(os.WriteFile(filepath.Join(srcDir, "patterns", "LICENSE"), []byte("not a pattern\n"), 0o644))
	changes, err := st.Install(openSrc(t, srcDir), []string{"acme/web-logs"}, InstallOptions{})
	must(err)
	if got := actions(changes); got["patterns/acme"] != Installed || got["patterns/other"] != Installed || len(got) != 3 {
		t.Errorf("install changes = %v", got)
	}
	if st.Patterns() != filepath.Join(dir, "hub", PatternDir) {
		t.Errorf("patterns dir = %q", st.Patterns())
	}
	if _, err := os.Stat(filepath.Join(st.Patterns(), "LICENSE")); err == nil {
		t.Error("LICENSE copied as a pattern file")
	}
	appendTo(t, filepath.Join(srcDir, "patterns", "acme"), "ACME_NEW y\n")
	appendTo(t, filepath.Join(srcDir, "patterns", "other"), "OTHER_NEW y\n")
	appendTo(t, filepath.Join(st.Patterns(), "other"), "MINE z\n")
	st, _ = Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	changes, err = st.Upgrade(openSrc(t, srcDir), nil, InstallOptions{})
	must(err)
	if got := actions(changes); got["patterns/acme"] != Upgraded || got["patterns/other"] != Tainted {
		t.Errorf("upgrade changes = %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(st.Patterns(), "other")); !strings.HasSuffix(string(b), "MINE z\n") {
		t.Errorf("edited pattern file overwritten:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(st.Patterns(), "acme")); !strings.HasSuffix(string(b), "ACME_NEW y\n") {
		t.Errorf("pattern file not upgraded:\n%s", b)
	}
}

// TestSnapshot: restore puts the store back as it was before a change,
// including when there was no store at all.
func TestSnapshot(t *testing.T) {
	src := openSrc(t, "testdata/src")
	dir := t.TempDir()
	st, _ := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	restore, _, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Install(src, []string{"acme/base-enrich"}, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("restore left a store that did not exist: %v", err)
	}
	if _, err := st.Install(src, []string{"acme/base-enrich"}, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(st.Dir, StateFile))
	restore, discard, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Install(src, []string{"acme/web"}, InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	discard()
	after, _ := os.ReadFile(filepath.Join(st.Dir, StateFile))
	if string(after) != string(before) {
		t.Errorf("state after restore:\n%s\nwant\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(st.Dir, "scenarios/acme/web-scan.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("restore kept a file the undone install wrote: %v", err)
	}
	if _, err := os.Stat(st.Dir + ".undo"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the copy stays after restore: %v", err)
	}
}

func TestLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "hub")
	unlock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock: %v, want ErrBusy", err)
	}
	unlock()
	unlock, err = Lock(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock()
}

// A collection's context is installed with it; one the source lacks (an
// older snapshot) does not stop the install, as the engine loads without.
func TestInstallContexts(t *testing.T) {
	srcDir := t.TempDir()
	copyTree(t, "testdata/src", srcDir)
	web := filepath.Join(srcDir, "hub", "collections", "acme", "web.yaml")
	b, err := os.ReadFile(web)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, "contexts:\n  - acme/web_ctx\n  - acme/not_in_source\n"...)
	ctxFile := filepath.Join(srcDir, "hub", "contexts", "acme", "web_ctx.yaml")
	if err := os.WriteFile(web, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(ctxFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctxFile, []byte("context:\n  target_uri: [evt.Meta.http_path]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := openSrc(t, srcDir)
	dir := t.TempDir()
	st, err := Open(filepath.Join(dir, "hub"), filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	changes, err := st.Install(src, []string{"acme/web"}, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(changes)["contexts/acme/web_ctx"]; got != Installed {
		t.Errorf("context change %q, want %q (changes %v)", got, Installed, actions(changes))
	}
	if _, err := os.Stat(filepath.Join(dir, "hub", "contexts", "acme", "web_ctx.yaml")); err != nil {
		t.Errorf("context not installed: %v", err)
	}
}
