package metrics

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

type fakeActions []ActionStat

func (f fakeActions) ActionStats() []ActionStat { return f }

func TestActionCollector(t *testing.T) {
	c := NewActionCollector(fakeActions{{
		Name: "report", Runs: map[string]uint64{"ok": 5, "exit": 2, "timeout": 1},
		Exits: map[int]uint64{0: 5, 3: 2, -1: 1}, Dropped: 4, Queued: 2, Seconds: 1.5,
	}})
	want := `# HELP moat_action_dropped_total Ban and unban events a full action queue dropped.
# TYPE moat_action_dropped_total counter
moat_action_dropped_total{action="report"} 4
# HELP moat_action_exit_status_total Action command runs by exit status; -1 is a command killed by a signal.
# TYPE moat_action_exit_status_total counter
moat_action_exit_status_total{action="report",status="-1"} 1
moat_action_exit_status_total{action="report",status="0"} 5
moat_action_exit_status_total{action="report",status="3"} 2
# HELP moat_action_queue_length Events waiting in an action's queue.
# TYPE moat_action_queue_length gauge
moat_action_queue_length{action="report"} 2
# HELP moat_action_run_seconds_total Time action commands spent running.
# TYPE moat_action_run_seconds_total counter
moat_action_run_seconds_total{action="report"} 1.5
# HELP moat_action_runs_total Action command runs by result: ok (exit 0), exit (another status), timeout (killed), start, template or stopped.
# TYPE moat_action_runs_total counter
moat_action_runs_total{action="report",result="exit"} 2
moat_action_runs_total{action="report",result="ok"} 5
moat_action_runs_total{action="report",result="timeout"} 1
`
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	if buf.String() != want {
		t.Fatalf("scrape\n%s\nwant\n%s", buf.String(), want)
	}
	promtool := needTool(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
