package acquire

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moatsec/moat/detect"
	"github.com/moatsec/moat/internal/testutil"
)

// The fake in docker_test.go pins the protocol as documented; these tests
// hold the source against a real Engine API: podman's compatible service,
// run as root with its own storage, so nothing of the host's containers
// is seen or touched. Containers run with --network none from an image
// imported from a local busybox: no registry is reached.

// podmanWait bounds every wait on podman: container starts on a loaded
// two-core machine with vfs storage take seconds, not milliseconds.
const podmanWait = 60 * time.Second

type podman struct {
	t       *testing.T
	bin     string
	globals []string
	sock    string
}

// newPodman starts a podman API service on a socket in a fresh directory
// and stops it, and every container it made, when the test ends.
func newPodman(t *testing.T) *podman {
	t.Helper()
	testutil.RequireRoot(t)
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("SKIPPED: podman is not installed (apt-get install podman runc busybox-static); the docker source is then tested against the fake only")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		// crun refuses hybrid cgroup hierarchies, which CI machines have.
		t.Skip("SKIPPED: runc is not installed (apt-get install runc)")
	}
	// A short directory: a unix socket path is limited to 108 bytes.
	dir, err := os.MkdirTemp("", "moat-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, bin: bin, sock: filepath.Join(dir, "podman.sock"), globals: []string{
		"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc",
	}}
	svc := exec.Command(bin, append(p.globals, "system", "service", "--time=0", "unix://"+p.sock)...)
	var svcOut bytes.Buffer
	svc.Stdout, svc.Stderr = &svcOut, &svcOut
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Containers first, while the service still answers; then the
		// service, then the files (nothing stays mounted once the
		// containers are gone).
		if out, err := exec.Command(bin, append(p.globals, "rm", "--all", "--force", "--time", "0")...).CombinedOutput(); err != nil {
			t.Errorf("podman rm: %v: %s", err, out)
		}
		_ = svc.Process.Kill()
		_ = svc.Wait()
		removeWhenUnused(t, dir)
	})
	deadline := time.Now().Add(podmanWait)
	for {
		if _, err := os.Stat(p.sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("podman service did not create %s: %s", p.sock, svcOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.importImage(dir)
	return p
}

// removeWhenUnused removes dir once no process names it: conmon runs
// "podman container cleanup" with our flags after a container exits, on
// its own time, and that recreates the directories it names.
func removeWhenUnused(t *testing.T, dir string) {
	deadline := time.Now().Add(podmanWait)
	for usedBy(dir) != "" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if p := usedBy(dir); p != "" {
		t.Errorf("%s still in use by %s", dir, p)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("remove %s: %v", dir, err)
	}
}

// usedBy returns the command line of a process that names dir, or "".
func usedBy(dir string) string {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmdlines {
		b, err := os.ReadFile(c)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			return strings.ReplaceAll(string(b), "\x00", " ")
		}
	}
	return ""
}

func (p *podman) run(args ...string) string {
	p.t.Helper()
	out, err := exec.Command(p.bin, append(p.globals, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("podman %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// importImage makes localhost/moat-test from the host's busybox: a static
// binary, so the image needs no library.
func (p *podman) importImage(dir string) {
	p.t.Helper()
	bb := ""
	for _, c := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			bb = c
			break
		}
	}
	if bb == "" {
		p.t.Skip("SKIPPED: busybox is not installed (apt-get install busybox-static)")
	}
	body, err := os.ReadFile(bb)
	if err != nil {
		p.t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777},
		{Name: "bin/sleep", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			p.t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(body); err != nil {
				p.t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		p.t.Fatal(err)
	}
	tarPath := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o600); err != nil {
		p.t.Fatal(err)
	}
	p.run("import", tarPath, "localhost/moat-test:latest")
}

// start runs a container that prints "NAME line N" every 100ms, N from 1.
func (p *podman) start(name string, labels ...string) {
	p.t.Helper()
	args := []string{"run", "-d", "--name", name, "--network", "none", "--log-driver", "k8s-file",
		// The rlimits podman sets by default exceed what a root without
		// CAP_SYS_RESOURCE in a container may raise to.
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	args = append(args, "localhost/moat-test:latest", "sh", "-c",
		`i=0; while :; do i=$((i+1)); echo "`+name+` line $i"; sleep 0.1; done`)
	p.run(args...)
}

func (p *podman) startSource(t *testing.T, stateDir string, mut func(*Config)) *dockerRun {
	t.Helper()
	cfg := defaultConfig()
	cfg.Source = KindDocker
	cfg.DockerHost = "unix://" + p.sock
	cfg.CheckInterval = 200 * time.Millisecond
	cfg.Start = "head"
	mut(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	src, err := New(cfg, stateDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &dockerRun{t: t, src: src.(*dockerSource), out: make(chan detect.Line, 4096), stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- src.Stream(ctx, r.out) }()
	t.Cleanup(r.close)
	select {
	case <-r.src.Positioned():
	case <-time.After(podmanWait):
		t.Fatal("not positioned")
	}
	return r
}

// numbers receives the next n lines of container name and returns their
// counters; lines of other containers are checked for their source and
// dropped.
func numbers(t *testing.T, r *dockerRun, name string, n int) ([]int, detect.Line) {
	t.Helper()
	var got []int
	var last detect.Line
	timeout := time.After(podmanWait)
	for len(got) < n {
		select {
		case l := <-r.out:
			rest, ok := strings.CutPrefix(l.Raw, l.Src+" line ")
			if !ok {
				t.Fatalf("line %q from %q: not that container's", l.Raw, l.Src)
			}
			if l.Src != name {
				continue
			}
			i, err := strconv.Atoi(rest)
			if err != nil {
				t.Fatalf("line %q: %v", l.Raw, err)
			}
			got, last = append(got, i), l
		case <-timeout:
			t.Fatalf("%d of %d lines of %s: %v; stats %+v", len(got), n, name, got, r.src.Stats())
		}
	}
	return got, last
}

// consecutive fails unless got is from, from+1, ...
func consecutive(t *testing.T, what string, got []int, from int) {
	t.Helper()
	for i, v := range got {
		if v != from+i {
			t.Fatalf("%s: lines %v, want consecutive from %d", what, got, from)
		}
	}
}

// TestPodmanDocker: against podman's Engine API, the source reads a
// container by name and by label from its first line, resumes after a
// restart of the source at the next line (none lost, none repeated,
// though the container wrote on meanwhile), and follows a container that
// starts after the source.
func TestPodmanDocker(t *testing.T) {
	p := newPodman(t)
	p.start("moat-web", "moat.test=1")
	p.start("moat-lab", "moat.test=1", "crowdsec.enable=true", "crowdsec.labels.type=syslog")

	t.Run("name", func(t *testing.T) {
		r := p.startSource(t, "", func(c *Config) {
			c.ContainerName = []string{"moat-web"}
			c.Labels = map[string]string{"type": "nginx"}
		})
		got, l := numbers(t, r, "moat-web", 5)
		consecutive(t, "by name", got, 1)
		if l.Module != KindDocker || l.Labels["type"] != "nginx" || l.Time.IsZero() || time.Since(l.Time) > time.Hour {
			t.Fatalf("line %+v", l)
		}
		for _, other := range []string{"moat-lab"} {
			select {
			case l := <-r.out:
				if l.Src == other {
					t.Fatalf("line of %s, which the name does not select: %q", other, l.Raw)
				}
			default:
			}
		}
	})

	t.Run("label", func(t *testing.T) {
		r := p.startSource(t, "", func(c *Config) { c.UseContainerLabels = true })
		got, l := numbers(t, r, "moat-lab", 5)
		consecutive(t, "by label", got, 1)
		if l.Labels["type"] != "syslog" {
			t.Fatalf("labels %v, want type syslog from crowdsec.labels.type", l.Labels)
		}
	})

	t.Run("resume", func(t *testing.T) {
		state := t.TempDir()
		sel := func(c *Config) { c.ContainerName = []string{"moat-web"}; c.Labels = map[string]string{"type": "nginx"} }
		r := p.startSource(t, state, sel)
		got, _ := numbers(t, r, "moat-web", 10)
		consecutive(t, "first run", got, 1)
		r.close()
		if err := r.src.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		// Lines the first run had buffered but nobody took were sent
		// from its point of view: drain them, they count as delivered.
		last := got[len(got)-1]
		for drained := false; !drained; {
			select {
			case l := <-r.out:
				if l.Src == "moat-web" {
					n, _ := strconv.Atoi(strings.TrimPrefix(l.Raw, "moat-web line "))
					last = n
				}
			default:
				drained = true
			}
		}
		time.Sleep(time.Second) // the container writes on while the source is down
		r = p.startSource(t, state, sel)
		got, _ = numbers(t, r, "moat-web", 20)
		consecutive(t, "after restart", got, last+1)
	})

	t.Run("late", func(t *testing.T) {
		r := p.startSource(t, "", func(c *Config) {
			c.ContainerNameRegexp = []string{"^moat-late-"}
			c.Labels = map[string]string{"type": "nginx"}
		})
		select {
		case l := <-r.out:
			t.Fatalf("line %q before any container matched", l.Raw)
		case <-time.After(500 * time.Millisecond):
		}
		p.start("moat-late-1")
		got, _ := numbers(t, r, "moat-late-1", 5)
		consecutive(t, "late container", got, 1)
	})
}
