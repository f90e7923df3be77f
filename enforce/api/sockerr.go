package api

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// SocketGroup is the group the admin socket belongs to (ListenUnix): its
// members use the CLI without root. The Debian package creates it.
const SocketGroup = "moat"

// PermissionError means the socket is there but this user may not connect
// to it: the daemon runs, and only membership of SocketGroup is missing.
type PermissionError struct {
	Socket string
	Group  string
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("permission denied on the daemon socket %s: run as root, or join the group %s (usermod -aG %s USER, then log in again)", e.Socket, e.Group, e.Group)
}

// Is makes a PermissionError match os.ErrPermission.
func (e *PermissionError) Is(target error) bool { return target == os.ErrPermission }

// dialError says why the socket could not be reached: refused permission
// is not a stopped daemon, and telling one for the other sends the
// operator to restart a daemon that runs.
func dialError(socket string, err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return err
	}
	if errors.Is(op.Err, os.ErrPermission) {
		return &PermissionError{Socket: socket, Group: SocketGroup}
	}
	return fmt.Errorf("%s: %w (%v)", socket, ErrDaemonDown, op.Err)
}
