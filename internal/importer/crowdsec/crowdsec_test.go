package crowdsec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/moatsec/moat/internal/config"
	"github.com/moatsec/moat/internal/importer"
	"github.com/moatsec/moat/internal/testutil"
)

// tree writes files (path -> content) and links (path -> target) under
// root; "$ROOT" in either stands for root.
func tree(t *testing.T, root string, files, links map[string]string) {
	t.Helper()
	for p, body := range files {
		p = filepath.Join(root, p)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(strings.ReplaceAll(body, "$ROOT", root)), 0o644))
	}
	for p, target := range links {
		p = filepath.Join(root, p)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.Symlink(strings.ReplaceAll(target, "$ROOT", root), p))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// baseConfig is a config.yaml whose paths lie under $ROOT.
const baseConfig = `config_paths:
  config_dir: $ROOT/
  data_dir: $ROOT/data/
  hub_dir: $ROOT/hub/
db_config:
  type: sqlite
  db_path: $ROOT/data/crowdsec.db
api:
  server:
    listen_uri: 127.0.0.1:8080
`

// refuse stands for moat's loaders: it refuses a document that says
// refuse-me.
func refuse(name string, data []byte) error {
	if strings.Contains(string(data), "refuse-me") {
		return errors.New(name + ": refused")
	}
	return nil
}

// refuseFiles is refuse for acquisition files, which also refuses a
// file name given twice, as moat refuses a source name used twice.
func refuseFiles(files []importer.File) error {
	seen := map[string]bool{}
	for _, f := range files {
		if err := refuse(f.Name, f.Data); err != nil {
			return err
		}
		for _, w := range strings.FieldsFunc(string(f.Data), func(r rune) bool { return strings.ContainsRune(" \n[],", r) }) {
			if strings.HasPrefix(w, "/var/log/") {
				if seen[w] {
					return errors.New(w + " twice")
				}
				seen[w] = true
			}
		}
	}
	return nil
}

func fileText(r *importer.Result, name string) string {
	for _, f := range r.Files {
		if f.Name == name {
			return string(f.Data)
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }

// importCase is a CrowdSec configuration directory (with baseConfig as
// its config.yaml unless it gives one) and what its import must give.
type importCase struct {
	name  string
	files map[string]string
	links map[string]string
	check func(t *testing.T, r *importer.Result, root string)
	// notes are texts the report must hold, unnoted texts it must not.
	notes, unnoted []string
}

var importCases = []importCase{{
	name: "acquisition",
	files: map[string]string{
		"acquis.yaml": `filenames:
  - /var/log/nginx/*.log
  - ./tests/nginx/nginx.log
labels:
  type: nginx
---
source: cloudwatch
group_name: x
labels:
  type: syslog
---
journalctl_filter: ["_SYSTEMD_UNIT=ssh.service"]
use_time_machine: true
labels:
  type: syslog
---
filename: relative.log
labels:
  type: syslog
---
filename: /var/log/x.log
labels:
  type: refuse-me
`,
		"acquis.d/docker.yaml": "source: docker\ncontainer_name: [web]\nlabels:\n  type: nginx\n",
		"acquis.d/twice.yaml":  "filenames: [/var/log/nginx/*.log]\nlabels:\n  type: nginx\n",
	},
	check: func(t *testing.T, r *importer.Result, root string) {
		main := fileText(r, "acquis.d/crowdsec.yaml")
		for _, want := range []string{"source: file", "/var/log/nginx/*.log", "source: journalctl", "_SYSTEMD_UNIT=ssh.service"} {
			if !strings.Contains(main, want) {
				t.Errorf("acquis.d/crowdsec.yaml lacks %q:\n%s", want, main)
			}
		}
		for _, not := range []string{"./tests", "cloudwatch", "use_time_machine", "relative.log", "refuse-me"} {
			if strings.Contains(main, not) {
				t.Errorf("acquis.d/crowdsec.yaml keeps %q:\n%s", not, main)
			}
		}
		if !strings.Contains(fileText(r, "acquis.d/crowdsec-docker.yaml"), "container_name") || fileText(r, "acquis.d/crowdsec-twice.yaml") != "" {
			t.Errorf("want acquis.d/docker.yaml carried over, twice.yaml not: %v", r.Files)
		}
		if r.Fragment.Acquisition == nil || r.Fragment.Acquisition.Dir != "/out/acquis.d" {
			t.Errorf("acquisition.dir %+v, want /out/acquis.d", r.Fragment.Acquisition)
		}
	},
	notes: []string{
		"acquis.yaml:1: filenames ./tests/nginx/nginx.log is relative",
		"acquis.yaml:7: source cloudwatch has no moat equivalent",
		"acquis.yaml:12: use_time_machine dropped",
		"acquis.yaml:17: no file name left",
		"acquis.yaml:21: moat does not load this source",
		"twice.yaml:1: moat does not load this source (/var/log/nginx/*.log twice)",
	},
}, {
	name: "profiles",
	files: map[string]string{
		"profiles.yaml": `name: captcha_first
filters:
  - Alert.Remediation == true
decisions:
  - type: captcha
    duration: 1h
notifications:
  - slack_default
on_success: break
---
name: broken
filters:
  - refuse-me
`,
	},
	check: func(t *testing.T, r *importer.Result, root string) {
		p := fileText(r, "profiles.yaml")
		if r.Fragment.Profiles != "/out/profiles.yaml" || !strings.Contains(p, "captcha_first") || strings.Contains(p, "slack_default") || strings.Contains(p, "broken") {
			t.Errorf("profiles %q:\n%s", r.Fragment.Profiles, p)
		}
	},
	notes: []string{"notifications slack_default dropped", "decision type captcha", "profile broken: moat does not load this profile"},
}, {
	name:  "profiles none loads",
	files: map[string]string{"profiles.yaml": "name: broken\nfilters: [refuse-me]\n"},
	check: func(t *testing.T, r *importer.Result, root string) {
		if r.Fragment.Profiles != "" {
			t.Errorf("profiles %q, want moat's default", r.Fragment.Profiles)
		}
	},
	notes: []string{"no profile moat can load: moat's default profiles apply"},
}, {
	name:  "simulation on",
	files: map[string]string{"simulation.yaml": "simulation: on\nexclusions:\n  - crowdsecurity/ssh-bf\n"},
	check: func(t *testing.T, r *importer.Result, root string) {
		want := []config.ScenarioOverride{{Name: "*", Simulate: ptr(true)}, {Name: "crowdsecurity/ssh-bf", Simulate: ptr(false)}}
		if d := cmp.Diff(want, r.Fragment.Scenarios); d != "" || r.Fragment.Simulation != nil {
			t.Errorf("scenarios (-want +got):\n%s\nsimulation %v", d, r.Fragment.Simulation)
		}
	},
}, {
	name:  "simulation off",
	files: map[string]string{"simulation.yaml": "simulation: off\nexclusions:\n  - crowdsecurity/ssh-bf\n"},
	check: func(t *testing.T, r *importer.Result, root string) {
		if !slices.Equal(r.Fragment.Simulation, []string{"crowdsecurity/ssh-bf"}) || r.Fragment.Scenarios != nil {
			t.Errorf("simulation %v, scenarios %+v: want simulation [crowdsecurity/ssh-bf]", r.Fragment.Simulation, r.Fragment.Scenarios)
		}
	},
}, {
	name: "hub items",
	files: map[string]string{
		"hub/collections/acme/web.yaml":                "parsers:\n  - acme/web-logs\nscenarios:\n  - acme/web-bf\n",
		"hub/parsers/s01-parse/acme/web-logs.yaml":     "name: acme/web-logs\nfilter: \"1 == 1\"\ndata:\n  - dest_file: present.txt\n",
		"hub/scenarios/acme/web-bf.yaml":               "name: acme/web-bf\ndata:\n  - dest_file: absent.txt\n",
		"hub/scenarios/acme/scan.yaml":                 "name: acme/scan\n",
		"hub/parsers/s02-enrich/acme/whitelists.yaml":  "name: acme/whitelists\nwhitelist:\n  reason: private\n  ip: [127.0.0.1, \"::1\"]\n  cidr: [10.0.0.0/8, 0.0.0.0/1]\n",
		"data/present.txt":                             "x\n",
		"parsers/s02-enrich/mywhitelist.yaml":          "name: me/mywhitelist\nwhitelist:\n  reason: office\n  ip: [\"203.0.113.7\", \"::ffff:198.51.100.1\"]\n  cidr: [10.0.0.0/8]\n",
		"postoverflows/s01-whitelist/rdns-wl.yaml":     "name: me/rdns-wl\nwhitelist:\n  reason: bots\n  expression:\n    - evt.Enriched.reverse_dns endsWith '.example.org'\n",
		"scenarios/custom.yaml":                        "name: custom\ndata:\n  - dest_file: present.txt\n",
		"collections/mine.yaml":                        "name: me/mine\nscenarios:\n  - acme/mine-only\n",
		"hub/scenarios/acme/mine-only.yaml":            "name: acme/mine-only\n",
		"appsec-rules/rule.yaml":                       "name: x\n",
		"parsers/s01-parse/README.md":                  "not an item\n",
		"hub/collections/acme/unrelated.yaml":          "scenarios:\n  - acme/unrelated\n",
		"hub/scenarios/acme/never-enabled.yaml":        "name: acme/never-enabled\n",
		"hub/parsers/s02-enrich/acme/geoip-enrich.yml": "name: acme/geoip-enrich\n",
	},
	links: map[string]string{
		"collections/web.yaml":                "$ROOT/hub/collections/acme/web.yaml",
		"parsers/s01-parse/web-logs.yaml":     "../../hub/parsers/s01-parse/acme/web-logs.yaml",
		"scenarios/web-bf.yaml":               "$ROOT/hub/scenarios/acme/web-bf.yaml",
		"scenarios/scan.yaml":                 "$ROOT/hub/scenarios/acme/scan.yaml",
		"scenarios/mine-only.yaml":            "$ROOT/hub/scenarios/acme/mine-only.yaml",
		"parsers/s02-enrich/whitelists.yaml":  "$ROOT/hub/parsers/s02-enrich/acme/whitelists.yaml",
		"parsers/s02-enrich/geoip-enrich.yml": "$ROOT/hub/parsers/s02-enrich/acme/geoip-enrich.yml",
		"scenarios/gone.yaml":                 "$ROOT/hub/scenarios/acme/gone.yaml",
	},
	check: func(t *testing.T, r *importer.Result, root string) {
		want := &importer.HubInstall{
			Items:  []string{"collections/acme/web", "parsers/acme/geoip-enrich", "scenarios/acme/mine-only", "scenarios/acme/scan"},
			Source: filepath.Join(root, "hub"), Data: filepath.Join(root, "data"), AllowMissingData: true,
		}
		if d := cmp.Diff(want, r.HubInstall); d != "" {
			t.Errorf("hub install (-want +got):\n%s", d)
		}
		items := []string{"collections/acme/web", "collections/me/mine", "parsers/acme/geoip-enrich", "postoverflows/me/rdns-wl", "scenarios/acme/mine-only", "scenarios/acme/scan", "scenarios/local/custom"}
		if r.Fragment.Hub == nil || !slices.Equal(r.Fragment.Hub.Items, items) || r.Fragment.Hub.Dir != "/out/hub" {
			t.Errorf("hub %+v, want dir /out/hub and items %v", r.Fragment.Hub, items)
		}
		// In path order: mywhitelist.yaml takes 10.0.0.0/8 first.
		allow := []importer.AllowEntry{
			{Value: "203.0.113.7", Comment: "CrowdSec whitelist me/mywhitelist: office"},
			{Value: "198.51.100.1", Comment: "CrowdSec whitelist me/mywhitelist: office"},
			{Value: "10.0.0.0/8", Comment: "CrowdSec whitelist me/mywhitelist: office"},
		}
		if d := cmp.Diff(allow, r.Fragment.Allowlist); d != "" {
			t.Errorf("allowlist (-want +got):\n%s", d)
		}
		for _, f := range []string{"hub/postoverflows/s01-whitelist/me/rdns-wl.yaml", "hub/scenarios/local/custom.yaml", "hub/collections/me/mine.yaml"} {
			if !strings.Contains(fileText(r, f), "Local CrowdSec item") {
				t.Errorf("%s not written: %v", f, r.Files)
			}
		}
	},
	unnoted: []string{"collections/acme/web names"}, // its members are enabled
	notes: []string{
		"absent.txt, missing from CrowdSec's data_dir",
		"0.0.0.0/1 is wider than moat accepts",
		"postoverflows/me/rdns-wl: a whitelist with expressions",
		"local item scenarios/local/custom reads data file(s) present.txt",
		"gone.yaml: a link to",
		"appsec-rules: moat has no AppSec engine",
	},
}}

func TestImport(t *testing.T) {
	for _, tt := range importCases {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{"config.yaml": baseConfig}
			for k, v := range tt.files {
				files[k] = v
			}
			tree(t, root, files, tt.links)
			r, err := Import(context.Background(), root, Options{OutDir: "/out", CheckAcquisition: refuseFiles, CheckProfiles: refuse})
			if err != nil {
				t.Fatal(err)
			}
			report := notesText(r)
			for _, n := range tt.notes {
				if !strings.Contains(report, n) {
					t.Errorf("report lacks %q:\n%s", n, report)
				}
			}
			for _, n := range tt.unnoted {
				if strings.Contains(report, n) {
					t.Errorf("report holds %q:\n%s", n, report)
				}
			}
			if tt.check != nil {
				tt.check(t, r, root)
			}
		})
	}
}

func notesText(r *importer.Result) string {
	var b strings.Builder
	for _, n := range r.Report {
		b.WriteString(n.String() + "\n")
	}
	return b.String()
}

// A copy of /etc/crowdsec imports its own files: paths config.yaml gives
// under config_dir move to the directory imported, config.yaml.local
// patches config.yaml, and environment variables are expanded.
func TestConfigPaths(t *testing.T) {
	root := t.TempDir()
	t.Setenv("CS_DATA", filepath.Join(root, "var"))
	tree(t, root, map[string]string{
		"config.yaml": `config_paths:
  config_dir: /etc/crowdsec/
  data_dir: ${CS_DATA}/
crowdsec_service:
  acquisition_path: /etc/crowdsec/acquis.yaml
db_config:
  type: sqlite
  db_path: /nowhere/crowdsec.db
`,
		"config.yaml.local": "db_config:\n  db_path: ${CS_DATA}/other.db\n",
	}, nil)
	c, err := loadConfig(root)
	must(t, err)
	got := []string{c.CrowdsecService.AcquisitionPath, c.CrowdsecService.AcquisitionDir, c.API.Server.ProfilesPath, c.ConfigPaths.DataDir, c.DBConfig.DBPath, c.DBConfig.Type}
	want := []string{root + "/acquis.yaml", root + "/acquis.d", root + "/profiles.yaml", root + "/var", root + "/var/other.db", "sqlite"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("paths (-want +got):\n%s", d)
	}
	if _, err := Import(context.Background(), t.TempDir(), Options{}); !errors.Is(err, ErrNoConfig) {
		t.Errorf("a directory without config.yaml: error %v, want ErrNoConfig", err)
	}
}

// Debian's default configuration, set up as the package's postinst does:
// the collections upstream recommends (their members come with them), the
// private-range whitelist as the allowlist, the data file Debian's hub
// snapshot lacks named.
func TestImportDebianDefaults(t *testing.T) {
	cs := testutil.DebianCrowdSec(t)
	r, err := Import(context.Background(), cs.ConfigDir, Options{OutDir: "/out"})
	must(t, err)
	wantItems := []string{"collections/crowdsecurity/apache2", "collections/crowdsecurity/linux", "collections/crowdsecurity/nginx"}
	if r.HubInstall == nil || !slices.Equal(r.HubInstall.Items, wantItems) || r.HubInstall.Source != cs.HubDir || r.HubInstall.Patterns != filepath.Join(cs.ConfigDir, "patterns") {
		t.Errorf("hub install %+v, want %v from %s", r.HubInstall, wantItems, cs.HubDir)
	}
	var allow []string
	for _, e := range r.Fragment.Allowlist {
		allow = append(allow, e.Value)
	}
	if want := []string{"192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12"}; !slices.Equal(allow, want) {
		t.Errorf("allowlist %v, want %v", allow, want)
	}
	acq := fileText(r, "acquis.d/crowdsec.yaml")
	if strings.Count(acq, "source: file") != 3 || strings.Count(acq, "source: journalctl") != 1 {
		t.Errorf("acquisition:\n%s", acq)
	}
	if len(r.Decisions) != 0 {
		t.Errorf("decisions %+v from a database holding none", r.Decisions)
	}
}
