package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMachines(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddMachine(ctx, "a", "password-a", false, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddMachine(ctx, "b", "password-b", true, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, pw string
		approved     bool
		want         error
	}{
		{"duplicate", "a", "x", false, ErrExists},
		{"empty id", "", "x", false, nil},
		{"long id", strings.Repeat("m", 129), "x", false, nil},
		{"empty password", "c", "", false, nil},
		{"password past bcrypt's 72 bytes", "c", strings.Repeat("p", 73), false, nil},
	} {
		err := st.AddMachine(ctx, tc.id, tc.pw, tc.approved, "")
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: AddMachine = %v, want an error (%v)", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name, id, pw string
		want         error
	}{
		{"unapproved", "a", "password-a", ErrNotApproved},
		{"unapproved, wrong password", "a", "nope", ErrBadPassword},
		{"approved", "b", "password-b", nil},
		{"wrong password", "b", "password-a", ErrBadPassword},
		{"unknown", "zz", "password-b", ErrBadPassword},
	} {
		m, err := st.AuthMachine(ctx, tc.id, tc.pw, "192.0.2.9", "crowdsec/v1.4.6", []string{"crowdsecurity/ssh-bf"})
		if !errors.Is(err, tc.want) || tc.want == nil && (m.ID != tc.id || m.IP != "192.0.2.9" || m.LastLogin.IsZero()) {
			t.Errorf("%s: AuthMachine = %+v, %v, want %v", tc.name, m, err, tc.want)
		}
	}
	if err := st.ApproveMachine(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AuthMachine(ctx, "a", "password-a", "", "", nil); err != nil {
		t.Fatalf("approved machine: %v", err)
	}
	now := time.Now()
	if err := st.MachineHeartbeat(ctx, "a", now, "192.0.2.3"); err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMachine(ctx, "a")
	if err != nil || !m.Approved || !m.LastHeartbeat.Equal(time.Unix(0, now.UnixNano())) || m.IP != "192.0.2.3" {
		t.Fatalf("GetMachine = %+v, %v", m, err)
	}
	b, _ := st.GetMachine(ctx, "b")
	if b.Version != "crowdsec/v1.4.6" || b.Scenarios != "crowdsecurity/ssh-bf" {
		t.Errorf("login bookkeeping: %+v", b)
	}
	for _, f := range []func() error{
		func() error { return st.ApproveMachine(ctx, "zz") },
		func() error { return st.DeleteMachine(ctx, "zz") },
		func() error { return st.MachineHeartbeat(ctx, "zz", now, "") },
		func() error { _, err := st.GetMachine(ctx, "zz"); return err },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) {
			t.Errorf("on an unknown machine: %v, want ErrNotFound", err)
		}
	}
	if err := st.DeleteMachine(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ms, err := st.ListMachines(ctx)
	if err != nil || len(ms) != 1 || ms[0].ID != "b" {
		t.Fatalf("ListMachines = %+v, %v", ms, err)
	}
}
