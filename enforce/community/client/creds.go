package client

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moatsec/moat/enforce/community/wire"
)

// Files in the state directory.
const (
	CredentialsFile = "community.json"
	QueueFile       = "community-queue.json"
)

// ErrNotRegistered is returned when the state directory holds no
// credentials: moat community register is the only way in.
var ErrNotRegistered = errors.New("not registered with a community server: run moat community register --server URL")

// Credentials are what register stores and the daemon logs in with.
type Credentials struct {
	Server    string `json:"server"`
	MachineID string `json:"machine_id"`
	Password  string `json:"password"`
}

// Pseudonym is the machine's name on a server: HMAC-SHA256 keyed with the
// host's machine id over the server URL. The raw id never leaves the host,
// and two servers cannot link the same host by its name.
func Pseudonym(machineID []byte, server string) string {
	m := hmac.New(sha256.New, bytes.TrimSpace(machineID))
	m.Write([]byte("moat community\x00" + server))
	return hex.EncodeToString(m.Sum(nil))[:48]
}

// LoadCredentials reads the credentials in dir.
func LoadCredentials(dir string) (Credentials, error) {
	b, err := os.ReadFile(filepath.Join(dir, CredentialsFile))
	if errors.Is(err, os.ErrNotExist) {
		return Credentials{}, ErrNotRegistered
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("community credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil || c.Server == "" || c.MachineID == "" || c.Password == "" {
		return Credentials{}, fmt.Errorf("community credentials %s: unreadable or incomplete (%v): register again", filepath.Join(dir, CredentialsFile), err)
	}
	return c, nil
}

// Queued is the number of signals the last run left queued in dir.
func Queued(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, QueueFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("community queue: %w", err)
	}
	var q []json.RawMessage
	if err := json.Unmarshal(b, &q); err != nil {
		return 0, fmt.Errorf("community queue: %w", err)
	}
	return len(q), nil
}

// Unregister forgets the credentials and the queued signals in dir.
func Unregister(dir string) error {
	err := os.Remove(filepath.Join(dir, CredentialsFile))
	if errors.Is(err, os.ErrNotExist) {
		return ErrNotRegistered
	}
	if err != nil {
		return fmt.Errorf("community unregister: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, QueueFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("community unregister: %w", err)
	}
	return nil
}

// writeFileAtomic writes b to path through a temporary file and a rename,
// so a crash leaves the old file or the new one, never half of one.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Register registers this host with server under its pseudonym, stores
// the credentials in dir (mode 0600), then enrols it with token (the
// server's enrolment token; empty for an open server). The credentials
// are kept when enrolment fails, so Enrol can be retried with the right
// token: the pseudonym is taken on the server from then on.
func Register(ctx context.Context, hc *http.Client, server, token string, machineID []byte, dir string) (Credentials, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Credentials{}, fmt.Errorf("community server %q: want an http(s) URL", server)
	}
	server = strings.TrimRight(server, "/")
	if len(bytes.TrimSpace(machineID)) == 0 {
		return Credentials{}, errors.New("community register: empty machine id")
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return Credentials{}, fmt.Errorf("community register: %w", err)
	}
	c := Credentials{Server: server, MachineID: Pseudonym(machineID, server), Password: hex.EncodeToString(pw)}
	if err := call(ctx, hc, "POST", server+"/v3/watchers", "", wire.Credentials{MachineID: c.MachineID, Password: c.Password}, nil); err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Code == http.StatusConflict {
			return Credentials{}, fmt.Errorf("community register at %s: this host is registered there already and its credentials are gone: an admin of the server deletes %s: %w", server, c.MachineID, err)
		}
		return Credentials{}, fmt.Errorf("community register at %s: %w", server, err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Credentials{}, fmt.Errorf("community register: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CredentialsFile), b, 0o600); err != nil {
		return Credentials{}, fmt.Errorf("community register: store credentials: %w", err)
	}
	if token != "" {
		if err := Enrol(ctx, hc, c, token); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Enrol presents the server's enrolment token for the registered host.
func Enrol(ctx context.Context, hc *http.Client, c Credentials, token string) error {
	tok, err := login(ctx, hc, c, nil)
	if err != nil {
		return fmt.Errorf("community enrol at %s: %w", c.Server, err)
	}
	if err := call(ctx, hc, "POST", c.Server+"/v3/watchers/enroll", tok, wire.Enroll{AttachmentKey: token, Name: "moat"}, nil); err != nil {
		return fmt.Errorf("community enrol at %s: %w", c.Server, err)
	}
	return nil
}

// Leave deletes this host's registration (and its reports) on the server.
func Leave(ctx context.Context, hc *http.Client, c Credentials) error {
	tok, err := login(ctx, hc, c, nil)
	if err != nil {
		return fmt.Errorf("community leave %s: %w", c.Server, err)
	}
	if err := call(ctx, hc, "DELETE", c.Server+"/v3/watchers/self", tok, nil, nil); err != nil {
		return fmt.Errorf("community leave %s: %w", c.Server, err)
	}
	return nil
}

// StatusError is a server's refusal.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("server answered %d: %s", e.Code, e.Message) }

// call sends in as JSON and decodes the answer into out.
func call(ctx context.Context, hc *http.Client, method, u, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "moat-community")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var m struct {
			Message string `json:"message"`
		}
		json.Unmarshal(raw, &m)
		if m.Message == "" {
			m.Message = http.StatusText(resp.StatusCode)
		}
		return &StatusError{resp.StatusCode, m.Message}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode answer of %s: %w", u, err)
		}
	}
	return nil
}

func login(ctx context.Context, hc *http.Client, c Credentials, scenarios []string) (string, error) {
	var lr wire.LoginResponse
	if err := call(ctx, hc, "POST", c.Server+"/v3/watchers/login", "", wire.Credentials{MachineID: c.MachineID, Password: c.Password, Scenarios: scenarios}, &lr); err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	return lr.Token, nil
}

// Status logs in with the credentials in dir and reports whether the
// server accepts this host's pulls (it answers 403 until enrolled).
func Status(ctx context.Context, hc *http.Client, dir string) (Credentials, error) {
	c, err := LoadCredentials(dir)
	if err != nil {
		return c, err
	}
	tok, err := login(ctx, hc, c, nil)
	if err != nil {
		return c, err
	}
	return c, call(ctx, hc, "GET", c.Server+"/v3/decisions/stream", tok, nil, nil)
}

// NewHTTPClient returns the client's HTTP client: through proxy when set
// (http://, https:// or socks5://, which net/http supports itself), else
// through the environment's HTTPS_PROXY.
func NewHTTPClient(proxy string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if proxy != "" {
		u, err := url.Parse(proxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5" && u.Scheme != "socks5h") {
			return nil, fmt.Errorf("community proxy %q: want http://, https:// or socks5://", proxy)
		}
		tr.Proxy = http.ProxyURL(u)
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}, nil
}
