package main

import (
	"fmt"
	"net"
	"os"

	"github.com/moatsec/moat/enforce/api"
)

// listeners are the daemon's sockets, opened before the kernel is touched:
// a port in use or a live socket of another daemon stops the start with
// nothing changed there (it used to leave table inet moat behind).
type listeners struct {
	admin, bouncer net.Listener // bouncer is nil when api.listen is ""
	// server is server.listen's, nil unless the server role has its own.
	server net.Listener
	socket string
}

func openListeners(socket, listen string) (*listeners, error) {
	l := &listeners{socket: socket}
	var err error
	if l.admin, err = api.ListenUnix(socket); err != nil {
		return nil, err
	}
	if listen != "" {
		if l.bouncer, err = net.Listen("tcp", listen); err != nil {
			l.close()
			return nil, fmt.Errorf("bouncer api: %w", err)
		}
	}
	return l, nil
}

func (l *listeners) close() {
	if l.server != nil {
		l.server.Close()
	}
	if l.bouncer != nil {
		l.bouncer.Close()
	}
	if l.admin != nil {
		l.admin.Close()
		os.Remove(l.socket)
	}
}
