package packaging_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/internal/testutil"
)

// repoRoot is the checkout the tests run in (packaging/..).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func need(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("SKIP: %s is not installed (make deps-deb installs the packaging tools): %v", c, err)
		}
	}
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// buildDeb runs the `make deb` script on the checkout as it is (the code
// this test run compiled, committed or not) with the given package
// version, into out.
func buildDeb(t *testing.T, version, out string) string {
	t.Helper()
	run(t, repoRoot(t), []string{"REF=worktree", "DEB_VERSION=" + version, "OUT_DIR=" + out, "BUILD_ROOT=" + filepath.Join(out, "build")},
		"packaging/build-deb.sh")
	debs, err := filepath.Glob(filepath.Join(out, "moat_"+version+"_*.deb"))
	if err != nil || len(debs) != 1 {
		t.Fatalf("build-deb.sh made %v (%v), want one moat_%s_*.deb", debs, err, version)
	}
	return debs[0]
}

// TestServiceUnit checks the units with systemd's own tools: `systemd-analyze
// verify` (syntax, the binary they start, the man pages they document) and
// `systemd-analyze security`, whose exposure score must stay at 3.0 or
// below ("OK"), for the daemon's unit and the community server's.
func TestServiceUnit(t *testing.T) {
	need(t, "systemd-analyze", "man", "go")
	dir := t.TempDir()
	// verify wants ExecStart= to exist and the man pages to resolve:
	// point them at a freshly built binary and the pages it generates.
	bin := filepath.Join(dir, "moat")
	run(t, repoRoot(t), nil, "go", "build", "-o", bin, "./cmd/moat")
	run(t, dir, nil, bin, "gen-docs", "--man", filepath.Join(dir, "man", "man8"))
	for name, start := range map[string]string{
		"moat.service":           "ExecStart=/usr/bin/moat run\n",
		"moat-community.service": "ExecStart=/usr/bin/moat community serve ",
	} {
		unit, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(unit), start) {
			t.Fatalf("%s: ExecStart is not %q", name, start)
		}
		local := filepath.Join(dir, name)
		if err := os.WriteFile(local, []byte(strings.ReplaceAll(string(unit), "/usr/bin/moat", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := run(t, dir, []string{"MANPATH=" + filepath.Join(dir, "man")}, "systemd-analyze", "verify", local); strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s printed:\n%s", name, out)
		}

		out := run(t, dir, nil, "systemd-analyze", "security", "--offline=true", "--no-pager", filepath.Join(repoRoot(t), "packaging", name))
		m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(name) + `: ([0-9.]+) (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		score, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("systemd-analyze security %s: exposure %.1f %s", name, score, m[2])
		if score > 3.0 || m[2] != "OK" {
			t.Errorf("%s: exposure %.1f %s, want 3.0 or lower (OK):\n%s", name, score, m[2], out)
		}
	}
}

// TestLintian builds the package and runs lintian on it: no error and no
// warning may be reported (information tags are overridden with reasons in
// debian/moat.lintian-overrides).
func TestLintian(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIP (-short): builds the Debian package (about a minute)")
	}
	need(t, "dpkg-buildpackage", "dh", "lintian", "go")
	deb := buildDeb(t, "0.0.0~lintian1", t.TempDir())
	// lintian refuses to be quiet as root; it reads the .deb only.
	out, err := exec.Command("lintian", "--allow-root", "--fail-on", "error,warning", "--display-info", "--show-overrides", "--tag-display-limit", "0", deb).CombinedOutput()
	if err != nil {
		t.Errorf("lintian: %v", err)
	}
	if !strings.Contains(string(out), "moat") {
		t.Errorf("lintian reported nothing about moat, not even the overridden tags: did it check the package?")
	}
	for l := range strings.Lines(string(out)) {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", strings.TrimSpace(l))
		}
	}
	t.Logf("lintian:\n%s", out)
}

// aptMirror is the Debian mirror this machine's apt uses, so debootstrap
// reaches what apt reaches.
func aptMirror() string {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for l := range strings.Lines(string(b)) {
			for _, w := range strings.Fields(l) {
				if strings.HasPrefix(w, "http") && strings.HasSuffix(strings.TrimSuffix(w, "/"), "/debian") {
					return w
				}
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// skipped are the parts of a chroot that change without the package being
// the cause (dpkg's and apt's own records, logs, caches, runtime dirs).
var skipped = []string{"proc", "sys", "dev", "run", "tmp", "var/tmp", "var/log", "var/cache", "var/lib/dpkg", "var/lib/apt", "root"}

// files lists every path under root, relative, outside the skipped trees.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() && slices.Contains(skipped, rel) {
			return filepath.SkipDir
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func minus(a, b []string) []string {
	var out []string
	for _, s := range a {
		if _, found := slices.BinarySearch(b, s); !found {
			out = append(out, s)
		}
	}
	return out
}

// TestInstall installs the package in a throwaway Debian 12 chroot with the
// network unshared, runs the daemon on its default configuration for a
// few seconds, and records every outgoing connection attempt of the
// maintainer scripts and the daemon, which must be none (egressWatch);
// then it upgrades it to a rebuilt package with a higher
// version, removes and purges it, and checks each step: the installed
// files, `moat version` and `moat config check`, that the upgrade keeps
// the kernel state (nftables table, bpffs pins) and removal takes it away,
// and that after purge not one file of the package is left.
//
// systemd does not run in a chroot: the maintainer scripts must cope, as
// deb-systemd-invoke does.
func TestInstall(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIP (-short): debootstraps Debian 12 from the mirror and builds the package twice (several minutes)")
	}
	need(t, "debootstrap", "dpkg-buildpackage", "dh", "go", "nft", "bpftool", "ip", "chroot")

	work := t.TempDir()
	root := filepath.Join(work, "root")
	const v1, v2 = "0.0.0~test1", "0.0.0~test2"
	deb1, deb2 := bootstrapWithDebs(t, root, filepath.Join(work, "debs"), v1, v2)
	env := []string{"DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

	// The package's Depends come from the mirror, with the network.
	var deps []string
	for _, d := range strings.Split(run(t, work, nil, "dpkg-deb", "-f", deb1, "Depends"), ",") {
		deps = append(deps, strings.Fields(d)[0])
	}
	run(t, work, env, append([]string{"chroot", root, "apt-get", "install", "-y", "--no-install-recommends"}, deps...)...)
	before := files(t, root)

	// Everything after this runs in a network namespace of its own: no
	// network for the maintainer scripts, and the nftables state moat
	// cleanup acts on is this namespace's, never the host's.
	ns := testutil.NewNetNS(t)
	inRoot := func(args ...string) string {
		t.Helper()
		return run(t, work, env, append([]string{"ip", "netns", "exec", ns.Name, "chroot", root}, args...)...)
	}
	bpffs := mountBPFFS(t, root)
	// Every attempt to reach beyond this host from here on is recorded
	// (egress_test.go): the default install phones nowhere.
	egress := egressWatch(t, ns)

	// Install: preinst and postinst run in the namespace, recorded.
	inRoot("dpkg", "-i", "/tmp/"+filepath.Base(deb1))
	checkNoEgress(t, egress, "dpkg -i (maintainer scripts)")
	if out := inRoot("moat", "version"); !strings.Contains(out, "moat "+v1+" ") {
		t.Errorf("moat version after install: %q, want %s", out, v1)
	}
	inRoot("moat", "config", "check")
	installed := minus(files(t, root), before)
	if len(installed) == 0 {
		t.Fatal("dpkg -i added no file")
	}
	checkInstalled(t, root, inRoot)

	// The daemon on the configuration the package installed, left
	// running a while (its startup, first journal and file reads, a
	// verify pass), recorded; then its kernel state goes so the upgrade
	// checks below start from the same state as before.
	runDefaultDaemon(t, ns, root, env, 8*time.Second)
	checkNoEgress(t, egress, "moat run on the default configuration")
	inRoot("moat", "cleanup")

	kernelState := leaveKernelState(t, ns, work, bpffs)

	// Upgrade: the kernel state stays for the new daemon to adopt.
	inRoot("dpkg", "-i", "/tmp/"+filepath.Base(deb2))
	if out := inRoot("moat", "version"); !strings.Contains(out, "moat "+v2+" ") {
		t.Errorf("moat version after upgrade: %q, want %s", out, v2)
	}
	if table, pin := kernelState(); !table || !pin {
		t.Errorf("upgrade dropped kernel state: nft table %v, pin %v; want both kept", table, pin)
	}

	// Remove: the binary goes, the configuration stays, the kernel state
	// goes with `moat cleanup`.
	inRoot("dpkg", "-r", "moat")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/moat")); err == nil {
		t.Error("/usr/bin/moat is still there after remove")
	}
	if _, err := os.Stat(filepath.Join(root, "etc/moat/moat.yaml")); err != nil {
		t.Errorf("remove took the configuration: %v", err)
	}
	if table, pin := kernelState(); table || pin {
		t.Errorf("after remove: nft table inet moat %v, pin %v; want neither (moat cleanup in prerm)", table, pin)
	}

	// Purge: nothing of moat is left.
	inRoot("dpkg", "--purge", "moat")
	left, gone := purgeDiff(before, files(t, root))
	if len(left) > 0 {
		t.Errorf("left after purge:\n%s", strings.Join(left, "\n"))
	}
	if len(gone) > 0 {
		t.Errorf("gone after purge that were there before install:\n%s", strings.Join(gone, "\n"))
	}
	if table, pin := kernelState(); table || pin {
		t.Errorf("after purge: nft table inet moat %v, pin %v; want neither", table, pin)
	}
	// dpkg-query fails for a package it has no record of: that is the goal.
	if out, err := exec.Command("chroot", root, "dpkg-query", "-W", "-f=${Status}", "moat").CombinedOutput(); err == nil {
		t.Errorf("dpkg still has a record of moat: %q", out)
	}
	t.Logf("install added %d paths, purge left %d", len(installed), len(left))
}

// bootstrapWithDebs debootstraps Debian 12 into root and builds the
// package at versions v1 and v2 into debs, and copies both into the
// chroot's /tmp. debootstrap mostly waits on the mirror: the packages are
// built meanwhile. A failed build must not let the temp dir go while
// debootstrap still writes into it: cleanup waits for it.
func bootstrapWithDebs(t *testing.T, root, debs, v1, v2 string) (deb1, deb2 string) {
	t.Helper()
	booted := make(chan struct{})
	var bootErr error
	go func() {
		defer close(booted)
		out, err := exec.Command("debootstrap", "--variant=minbase", "bookworm", root, aptMirror()).CombinedOutput()
		if err != nil {
			bootErr = fmt.Errorf("debootstrap: %v\n%s", err, out)
		}
	}()
	t.Cleanup(func() { <-booted })
	deb1 = buildDeb(t, v1, debs)
	deb2 = buildDeb(t, v2, debs)
	<-booted
	if bootErr != nil {
		t.Fatal(bootErr)
	}
	for _, d := range []string{deb1, deb2} {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "tmp", filepath.Base(d)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return deb1, deb2
}

// mountBPFFS gives the chroot a bpffs of its own, for moat's pins, until
// the test ends, and returns where.
func mountBPFFS(t *testing.T, root string) string {
	t.Helper()
	bpffs := filepath.Join(root, "sys/fs/bpf")
	if err := os.MkdirAll(bpffs, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, filepath.Dir(root), nil, "mount", "-t", "bpf", "bpf", bpffs)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", bpffs).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", bpffs, err, out)
		}
	})
	return bpffs
}

// checkInstalled checks what the installed package put in the chroot at
// root: its files, its state directory, its group and its conffiles.
func checkInstalled(t *testing.T, root string, inRoot func(args ...string) string) {
	t.Helper()
	for _, p := range []string{
		"usr/bin/moat", "etc/moat/moat.yaml", "etc/moat/profiles.yaml", "etc/moat/acquis.d/sshd.yaml",
		"usr/share/moat/hub/scenarios/moat/ssh-bf.yaml", "usr/share/moat/hub/scenarios/moat/http-probing.yaml",
		"usr/share/moat/patterns/http", "lib/systemd/system/moat.service", "usr/share/man/man8/moat.8.gz",
		"usr/share/bash-completion/completions/moat", "usr/share/zsh/vendor-completions/_moat", "var/lib/moat",
		"etc/systemd/system/multi-user.target.wants/moat.service",
		"lib/systemd/system/moat-community.service", "etc/moat/community-server.yaml",
	} {
		// Not the list: /lib is a link to /usr/lib in bookworm. Lstat:
		// the enablement link's absolute target is the chroot's.
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	// The community server is installed, never enabled: serving other
	// hosts is an operator's decision.
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/moat-community.service")); err == nil {
		t.Error("the package enabled moat-community.service")
	}
	if _, err := os.Stat("grafana/moat.json"); err == nil {
		if _, err := os.Stat(filepath.Join(root, "usr/share/moat/grafana/moat.json")); err != nil {
			t.Errorf("the Grafana dashboard is not installed: %v", err)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "var/lib/moat")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("/var/lib/moat: %v, want a 0700 directory (%v)", st, err)
	}
	if out := inRoot("getent", "group", "moat"); !strings.HasPrefix(out, "moat:") {
		t.Errorf("no moat group: %q", out)
	}
	conffiles := inRoot("dpkg-query", "-W", "-f=${Conffiles}", "moat")
	for _, c := range []string{"/etc/moat/moat.yaml", "/etc/moat/profiles.yaml", "/etc/moat/acquis.d/sshd.yaml", "/etc/moat/community-server.yaml"} {
		if !strings.Contains(conffiles, c+" ") {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}
}

// leaveKernelState leaves kernel state as a running daemon does: its
// nftables table in ns and a pinned map (named as moat's single-address
// map) under bpffs. kernelState reports which of the two are still there.
func leaveKernelState(t *testing.T, ns *testutil.NetNS, work, bpffs string) (kernelState func() (table, pin bool)) {
	t.Helper()
	ns.Run(t, "nft", "add", "table", "inet", "moat")
	pins := filepath.Join(bpffs, "moat")
	if err := os.Mkdir(pins, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, work, nil, "bpftool", "map", "create", filepath.Join(pins, "moat_single4"), "type", "hash", "key", "4", "value", "8", "entries", "16", "name", "moat_single4")
	return func() (table, pin bool) {
		t.Helper()
		table = strings.Contains(ns.Run(t, "nft", "list", "tables"), "table inet moat")
		_, err := os.Stat(pins)
		return table, err == nil
	}
}

// purgeDiff compares the chroot's paths before install and after purge:
// left are there only after, gone only before. addgroup leaves shadow's
// backup of the file it edited, as any group change does; it is not the
// package's.
func purgeDiff(before, after []string) (left, gone []string) {
	after = slices.DeleteFunc(after, func(p string) bool { return p == "etc/gshadow-" || p == "etc/group-" })
	before = slices.DeleteFunc(before, func(p string) bool { return p == "etc/gshadow-" || p == "etc/group-" })
	return minus(after, before), minus(before, after)
}

// unitCaps returns the unit's capability bounding set as setpriv spells
// capabilities ("net_admin"), so the sandbox test follows the unit.
func unitCaps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("moat.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps, ambient []string
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "CapabilityBoundingSet="); ok {
			caps = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "AmbientCapabilities="); ok {
			ambient = strings.Fields(v)
		}
	}
	if len(caps) == 0 || !slices.Equal(caps, ambient) {
		t.Fatalf("moat.service: bounding set %q and ambient set %q: want the same, non-empty", caps, ambient)
	}
	for i, c := range caps {
		caps[i] = strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	return caps
}

// TestServiceSandbox does what the daemon does to the kernel with no more
// than the unit grants it, since systemd itself cannot be started here:
// only the unit's capabilities (bounding and ambient, no CAP_SYS_ADMIN),
// no new privileges, /sys and /proc/sys read-only as ProtectKernelTunables
// makes them, /sys/fs/bpf writable. In a network namespace of its own it
// creates moat's nftables table with a timeout set and an element, loads
// moat's XDP object (bpf/moat_bpfel.o) with its maps pinned, and attaches
// the program to a veth.
func TestServiceSandbox(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("SKIP (-short): loads moat's XDP program under the unit's capabilities in a network namespace")
	}
	need(t, "setpriv", "unshare", "nft", "bpftool", "ip")
	var plus []string
	for _, c := range unitCaps(t) {
		plus = append(plus, "+"+c)
	}
	caps := strings.Join(plus, ",")
	obj, err := filepath.Abs("../bpf/moat_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(obj); err != nil {
		t.Skipf("SKIP: no XDP object to load: %v", err)
	}
	ns := testutil.NewNetNS(t)
	ns.Run(t, "ip", "link", "add", "moat-sb0", "type", "veth", "peer", "name", "moat-sb1")
	ns.Run(t, "ip", "link", "set", "moat-sb0", "up")
	ns.Run(t, "ip", "link", "set", "moat-sb1", "up")

	// Inside: a private mount namespace (nothing leaks to the host), a
	// bpffs on /sys/fs/bpf as systemd mounts it at boot, then the unit's
	// restrictions, then the work.
	work := strings.Join([]string{
		"nft add table inet moat",
		"nft add set inet moat ban4 '{ type ipv4_addr; flags timeout; }'",
		"nft add element inet moat ban4 '{ 198.18.0.1 timeout 1h }'",
		"mkdir /sys/fs/bpf/moat",
		"bpftool prog loadall " + obj + " /sys/fs/bpf/moat/progs type xdp",
		"bpftool net attach xdp pinned /sys/fs/bpf/moat/progs/moat_xdp dev moat-sb0",
		"ls /sys/fs/bpf",
	}, " && ")
	script := strings.Join([]string{
		"set -e",
		"mount -t bpf bpf /sys/fs/bpf",
		"mount --bind /proc/sys /proc/sys",
		"mount -o remount,ro,bind /proc/sys",
		"mount -o remount,ro,bind /sys",
		"exec setpriv --inh-caps=-all," + caps + " --ambient-caps=-all," + caps + " --bounding-set=-all," + caps + " --no-new-privs sh -ec '" + strings.ReplaceAll(work, "'", `'\''`) + "; grep ^CapEff /proc/self/status; if echo 1 >/proc/sys/net/ipv4/ip_forward 2>/dev/null; then echo tunables-writable; fi'",
	}, "\n")
	out := ns.Run(t, "unshare", "-m", "--propagation", "private", "sh", "-c", script)
	t.Logf("sandboxed with %s:\n%s", caps, out)
	for _, want := range []string{"moat_single4", "moat_range6"} {
		if !strings.Contains(out, want) {
			t.Errorf("map %s not pinned", want)
		}
	}
	const capSysAdmin = 21
	m := regexp.MustCompile(`CapEff:\s*([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no CapEff in the sandbox output")
	}
	if eff, err := strconv.ParseUint(m[1], 16, 64); err != nil || eff&(1<<capSysAdmin) != 0 || eff == 0 {
		t.Errorf("sandbox CapEff %s (%v): want the unit's capabilities and not CAP_SYS_ADMIN", m[1], err)
	}
	if strings.Contains(out, "tunables-writable") {
		t.Error("/proc/sys was writable in the sandbox: the test does not model ProtectKernelTunables")
	}
	if l := ns.Run(t, "ip", "link", "show", "moat-sb0"); !strings.Contains(l, " xdp") {
		t.Errorf("no XDP program on the veth:\n%s", l)
	}
	if s := ns.Run(t, "nft", "list", "set", "inet", "moat", "ban4"); !strings.Contains(s, "198.18.0.1 timeout 1h") {
		t.Errorf("ban4 does not hold the element:\n%s", s)
	}
}
