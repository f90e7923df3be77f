package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/moatsec/moat/enforce/store"
	"golang.org/x/crypto/bcrypt"
)

// The machines of the fleet server, as the SQLite store keeps them: a
// bcrypt hash of the password (bcrypt's default cost), an approval, and
// what the machine last told of itself.

const machineCols = `machine_id, approved, created_at, last_login, last_heartbeat, ip, version, scenarios`

func scanMachine(sc scanner, extra ...any) (store.Machine, error) {
	var m store.Machine
	var created, login, beat int64
	if err := sc.Scan(append([]any{&m.ID, &m.Approved, &created, &login, &beat, &m.IP, &m.Version, &m.Scenarios}, extra...)...); err != nil {
		return store.Machine{}, err
	}
	m.Created, m.LastLogin, m.LastHeartbeat = fromNanos(created), fromNanos(login), fromNanos(beat)
	return m, nil
}

// AddMachine registers a machine; approved machines may log in at once,
// others after ApproveMachine. ip is where it registered from.
func (s *Store) AddMachine(ctx context.Context, id, password string, approved bool, ip string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("machine id must be 1 to 128 characters")
	}
	if password == "" || len(password) > store.MaxPasswordBytes {
		return fmt.Errorf("machine password must be 1 to %d bytes", store.MaxPasswordBytes)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("machine %q: hash password: %w", id, err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO machines (machine_id, password_hash, approved, created_at, ip) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (machine_id) DO NOTHING`,
		id, hash, approved, time.Now().UnixNano(), ip)
	if err != nil {
		return s.wrap("add machine", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("add machine: machine %q: %w", id, store.ErrExists)
	}
	return nil
}

// noMachineHash is compared against when the machine does not exist, so
// timing does not tell which ids do; made on first use.
var noMachineHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("moat-no-such-machine"), bcrypt.DefaultCost)
	return h
})

// AuthMachine checks a machine's password and approval and records the
// login. An unknown machine and a wrong password are both
// store.ErrBadPassword; an unapproved one is store.ErrNotApproved.
func (s *Store) AuthMachine(ctx context.Context, id, password, ip, version string, scenarios []string) (store.Machine, error) {
	var hash []byte
	m, err := scanMachine(s.pool.QueryRow(ctx, `SELECT `+machineCols+`, password_hash FROM machines WHERE machine_id = $1`, id), &hash)
	if notFound(err) {
		bcrypt.CompareHashAndPassword(noMachineHash(), []byte(password))
		return store.Machine{}, store.ErrBadPassword
	}
	if err != nil {
		return store.Machine{}, s.wrap(fmt.Sprintf("authenticate machine %q", id), err)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return store.Machine{}, store.ErrBadPassword
	}
	if !m.Approved {
		return store.Machine{}, fmt.Errorf("machine %q: %w", id, store.ErrNotApproved)
	}
	m.LastLogin, m.IP = time.Now(), ip
	if len(version) > 256 {
		version = version[:256]
	}
	m.Version = version
	sc := strings.Join(scenarios, ",")
	if len(sc) > 64<<10 {
		sc = sc[:64<<10]
	}
	m.Scenarios = sc
	if _, err := s.pool.Exec(ctx, `UPDATE machines SET last_login = $1, ip = $2, version = $3, scenarios = $4 WHERE machine_id = $5`,
		m.LastLogin.UnixNano(), m.IP, m.Version, m.Scenarios, id); err != nil {
		return store.Machine{}, s.wrap(fmt.Sprintf("machine %q login", id), err)
	}
	return m, nil
}

// GetMachine returns one machine.
func (s *Store) GetMachine(ctx context.Context, id string) (store.Machine, error) {
	m, err := scanMachine(s.pool.QueryRow(ctx, `SELECT `+machineCols+` FROM machines WHERE machine_id = $1`, id))
	if notFound(err) {
		return store.Machine{}, fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Machine{}, s.wrap(fmt.Sprintf("machine %q", id), err)
	}
	return m, nil
}

// ListMachines returns the registered machines by id.
func (s *Store) ListMachines(ctx context.Context) ([]store.Machine, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+machineCols+` FROM machines ORDER BY machine_id`)
	if err != nil {
		return nil, s.wrap("list machines", err)
	}
	defer rows.Close()
	var out []store.Machine
	for rows.Next() {
		m, err := scanMachine(rows)
		if err != nil {
			return nil, s.wrap("list machines", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list machines", err)
	}
	return out, nil
}

// ApproveMachine lets a registered machine log in.
func (s *Store) ApproveMachine(ctx context.Context, id string) error {
	return s.updateMachine(ctx, id, "approve", `UPDATE machines SET approved = true WHERE machine_id = $1`, id)
}

// DeleteMachine removes a machine.
func (s *Store) DeleteMachine(ctx context.Context, id string) error {
	return s.updateMachine(ctx, id, "delete", `DELETE FROM machines WHERE machine_id = $1`, id)
}

// MachineHeartbeat records a machine's heartbeat and address.
func (s *Store) MachineHeartbeat(ctx context.Context, id string, at time.Time, ip string) error {
	return s.updateMachine(ctx, id, "heartbeat", `UPDATE machines SET last_heartbeat = $1, ip = $2 WHERE machine_id = $3`, at.UnixNano(), ip, id)
}

func (s *Store) updateMachine(ctx context.Context, id, what, q string, args ...any) error {
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return s.wrap(fmt.Sprintf("%s machine %q", what, id), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("machine %q: %w", id, store.ErrNotFound)
	}
	return nil
}
