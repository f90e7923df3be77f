package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/moatsec/moat/enforce/store"
)

// Machine is a registered CrowdSec agent as the admin endpoints show it.
type Machine struct {
	ID            string    `json:"machine_id"`
	Approved      bool      `json:"approved"`
	CreatedAt     time.Time `json:"created_at"`
	LastLogin     time.Time `json:"last_login,omitzero"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	IP            string    `json:"ip,omitempty"`
	Version       string    `json:"version,omitempty"`
}

// AddMachineRequest is the body of POST /v1/admin/machines: an admin adds
// a machine approved.
type AddMachineRequest struct {
	ID       string `json:"machine_id"`
	Password string `json:"password"`
}

func fromMachine(m store.Machine) Machine {
	return Machine{ID: m.ID, Approved: m.Approved, CreatedAt: m.Created, LastLogin: m.LastLogin, LastHeartbeat: m.LastHeartbeat, IP: m.IP, Version: m.Version}
}

var errNoServerRole = &apiError{http.StatusConflict, "the server role is off (server.enabled in the configuration): no machines to manage"}

func (s *Server) machineAdminRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/admin/machines", handle(s.listMachines))
	mux.Handle("POST /v1/admin/machines", handle(s.addMachine))
	mux.Handle("POST /v1/admin/machines/{id}/approve", handle(s.approveMachine))
	mux.Handle("DELETE /v1/admin/machines/{id}", handle(s.deleteMachine))
}

func (s *Server) listMachines(w http.ResponseWriter, r *http.Request) error {
	if s.machines == nil {
		return errNoServerRole
	}
	ms, err := s.machines.st.ListMachines(r.Context())
	if err != nil {
		return err
	}
	out := make([]Machine, 0, len(ms))
	for _, m := range ms {
		out = append(out, fromMachine(m))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) addMachine(w http.ResponseWriter, r *http.Request) error {
	if s.machines == nil {
		return errNoServerRole
	}
	var req AddMachineRequest
	if err := decodeJSON(r.Body, &req); err != nil {
		return badRequest("%v", err)
	}
	if !validMachineID(req.ID) {
		return badRequest("machine id %q: want 1 to 128 letters, digits, '.', '-', '_' or '@'", req.ID)
	}
	if len(req.Password) < 8 || len(req.Password) > store.MaxPasswordBytes {
		return badRequest("password: want 8 to %d bytes", store.MaxPasswordBytes)
	}
	if err := s.machines.st.AddMachine(r.Context(), req.ID, req.Password, true, ""); err != nil {
		return err
	}
	m, err := s.machines.st.GetMachine(r.Context(), req.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, fromMachine(m))
	return nil
}

func (s *Server) approveMachine(w http.ResponseWriter, r *http.Request) error {
	if s.machines == nil {
		return errNoServerRole
	}
	id := r.PathValue("id")
	if err := s.machines.st.ApproveMachine(r.Context(), id); err != nil {
		return err
	}
	m, err := s.machines.st.GetMachine(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fromMachine(m))
	return nil
}

func (s *Server) deleteMachine(w http.ResponseWriter, r *http.Request) error {
	if s.machines == nil {
		return errNoServerRole
	}
	if err := s.machines.st.DeleteMachine(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Machines lists the registered machines.
func (c *Client) Machines(ctx context.Context) ([]Machine, error) {
	var out []Machine
	err := c.do(ctx, http.MethodGet, "/v1/admin/machines", nil, nil, &out)
	return out, err
}

// AddMachine registers a machine, approved.
func (c *Client) AddMachine(ctx context.Context, id, password string) (Machine, error) {
	var out Machine
	err := c.do(ctx, http.MethodPost, "/v1/admin/machines", nil, AddMachineRequest{ID: id, Password: password}, &out)
	return out, err
}

// ApproveMachine lets a registered machine log in.
func (c *Client) ApproveMachine(ctx context.Context, id string) (Machine, error) {
	var out Machine
	err := c.do(ctx, http.MethodPost, "/v1/admin/machines/"+url.PathEscape(id)+"/approve", nil, nil, &out)
	return out, err
}

// DeleteMachine removes a machine.
func (c *Client) DeleteMachine(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/admin/machines/"+url.PathEscape(id), nil, nil, nil)
}
