// Package fleet is the fleet agent's client: it pushes this host's alerts,
// with the decisions they took, to a fleet server (POST /v1/alerts, as a
// CrowdSec agent does) and receives every fleet decision by push from the
// server's decision stream (api.FleetStreamPath), which it hands to an
// Applier with origin fleet, idempotently by the server's decision ID.
//
// Its position in the stream is saved in the state directory, so a
// restart or a reconnect resumes where it stopped: nothing is missed and a
// replayed decision is applied once. While the server is unreachable it
// keeps what it holds (fail static): fleet decisions expire on their own.
//
// Against a CrowdSec LAPI, which has no fleet stream (404), it polls the
// bouncer stream (/v1/decisions/stream) with a bouncer key when one is
// configured, every PollInterval.
package fleet
