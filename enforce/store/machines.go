package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Machine is a CrowdSec agent registered on the fleet server. Its password
// is kept only as a bcrypt hash.
type Machine struct {
	ID            string
	Approved      bool
	Created       time.Time
	LastLogin     time.Time
	LastHeartbeat time.Time
	IP            string
	Version       string
	Scenarios     string
}

// Machine errors beside ErrNotFound and ErrExists.
var (
	// ErrBadPassword is a login with the wrong password, or for a machine
	// that does not exist: the two are not told apart to the client.
	ErrBadPassword = errors.New("wrong machine id or password")
	// ErrNotApproved is a login of a registered machine no admin approved.
	ErrNotApproved = errors.New("machine not approved")
)

// bcryptCost is bcrypt's default: a login costs tens of milliseconds,
// which only registration and an agent's login every token lifetime pay.
const bcryptCost = bcrypt.DefaultCost

// MaxPasswordBytes is bcrypt's limit; a longer password is refused rather
// than silently truncated.
const MaxPasswordBytes = 72

const machineColumns = `machine_id, approved, created_at, last_login, last_heartbeat, ip, version, scenarios`

func scanMachine(sc interface{ Scan(...any) error }) (Machine, error) {
	var m Machine
	var created, login, beat int64
	if err := sc.Scan(&m.ID, &m.Approved, &created, &login, &beat, &m.IP, &m.Version, &m.Scenarios); err != nil {
		return Machine{}, err
	}
	m.Created, m.LastLogin, m.LastHeartbeat = fromNanos(created), fromNanos(login), fromNanos(beat)
	return m, nil
}

// AddMachine registers a machine. approved is true when an admin adds it,
// or when it presented the server's enrolment token; otherwise it waits
// for ApproveMachine before it can log in. ip is where it registered from.
func (s *Store) AddMachine(ctx context.Context, id, password string, approved bool, ip string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("machine id must be 1 to 128 characters")
	}
	if password == "" || len(password) > MaxPasswordBytes {
		return fmt.Errorf("machine password must be 1 to %d bytes", MaxPasswordBytes)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return fmt.Errorf("machine %q: hash password: %w", id, err)
	}
	err = s.write(ctx, func(tx *sql.Tx, _ int64) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM machines WHERE machine_id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("machine %q: %w", id, ErrExists)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO machines (machine_id, password_hash, approved, created_at, ip) VALUES (?, ?, ?, ?, ?)`,
			id, hash, approved, time.Now().UnixNano(), ip)
		return err
	})
	if err != nil {
		return fmt.Errorf("add machine: %w", err)
	}
	return nil
}

// AuthMachine checks a machine's password and approval and records the
// login (time, address, version, scenarios). An unknown machine and a
// wrong password are the same ErrBadPassword; a right password on an
// unapproved machine is ErrNotApproved.
func (s *Store) AuthMachine(ctx context.Context, id, password, ip, version string, scenarios []string) (Machine, error) {
	var hash []byte
	row := s.r.QueryRowContext(ctx, `SELECT password_hash, `+machineColumns+` FROM machines WHERE machine_id = ?`, id)
	var m Machine
	var created, login, beat int64
	err := row.Scan(&hash, &m.ID, &m.Approved, &created, &login, &beat, &m.IP, &m.Version, &m.Scenarios)
	if errors.Is(err, sql.ErrNoRows) {
		// Spend what a real check spends, so timing does not tell which
		// machine ids exist.
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return Machine{}, ErrBadPassword
	}
	if err != nil {
		return Machine{}, fmt.Errorf("authenticate machine %q: %w", id, err)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return Machine{}, ErrBadPassword
	}
	if !m.Approved {
		return Machine{}, fmt.Errorf("machine %q: %w", id, ErrNotApproved)
	}
	m.Created, m.LastHeartbeat = fromNanos(created), fromNanos(beat)
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
	err = s.write(ctx, func(tx *sql.Tx, _ int64) error {
		_, err := tx.ExecContext(ctx, `UPDATE machines SET last_login = ?, ip = ?, version = ?, scenarios = ? WHERE machine_id = ?`,
			m.LastLogin.UnixNano(), m.IP, m.Version, m.Scenarios, id)
		return err
	})
	if err != nil {
		return Machine{}, fmt.Errorf("machine %q login: %w", id, err)
	}
	return m, nil
}

// dummyHash is compared against when the machine does not exist; made on
// first use, not at init, so the CLI never pays for it.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("moat-no-such-machine"), bcryptCost)
	return h
})

// GetMachine returns one machine.
func (s *Store) GetMachine(ctx context.Context, id string) (Machine, error) {
	m, err := scanMachine(s.r.QueryRowContext(ctx, `SELECT `+machineColumns+` FROM machines WHERE machine_id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Machine{}, fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Machine{}, fmt.Errorf("machine %q: %w", id, err)
	}
	return m, nil
}

// ListMachines returns the registered machines by id.
func (s *Store) ListMachines(ctx context.Context) ([]Machine, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+machineColumns+` FROM machines ORDER BY machine_id`)
	if err != nil {
		return nil, fmt.Errorf("list machines: %w", err)
	}
	defer rows.Close()
	var out []Machine
	for rows.Next() {
		m, err := scanMachine(rows)
		if err != nil {
			return nil, fmt.Errorf("list machines: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list machines: %w", err)
	}
	return out, nil
}

// ApproveMachine lets a registered machine log in.
func (s *Store) ApproveMachine(ctx context.Context, id string) error {
	return s.updateMachine(ctx, id, "approve", `UPDATE machines SET approved = 1 WHERE machine_id = ?`, id)
}

// DeleteMachine removes a machine; its tokens stop working at their next
// use, since every authenticated request looks the machine up.
func (s *Store) DeleteMachine(ctx context.Context, id string) error {
	return s.updateMachine(ctx, id, "delete", `DELETE FROM machines WHERE machine_id = ?`, id)
}

// MachineHeartbeat records a machine's heartbeat and address.
func (s *Store) MachineHeartbeat(ctx context.Context, id string, at time.Time, ip string) error {
	return s.updateMachine(ctx, id, "heartbeat", `UPDATE machines SET last_heartbeat = ?, ip = ? WHERE machine_id = ?`, at.UnixNano(), ip, id)
}

func (s *Store) updateMachine(ctx context.Context, id, what, q string, args ...any) error {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx, _ int64) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("%s machine %q: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("machine %q: %w", id, ErrNotFound)
	}
	return nil
}
