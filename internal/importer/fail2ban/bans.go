package fail2ban

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"net/url"
	"sort"
	"time"

	// fail2ban keeps its bans in SQLite.
	_ "github.com/mattn/go-sqlite3"
)

// DefaultDB is Debian's fail2ban database.
const DefaultDB = "/var/lib/fail2ban/fail2ban.sqlite3"

// Ban is an active ban of fail2ban's database: for an address banned by
// several jails, or several times, the one ending last.
type Ban struct {
	Jail string
	IP   netip.Addr
	// Until is zero for a ban that never ends.
	Until time.Time
	Count int
}

// Forever reports a ban without end (bantime -1).
func (b Ban) Forever() bool { return b.Until.IsZero() }

// ReadBans returns the bans of fail2ban's database still active at now,
// one per address, in address order; rows whose ip is not an address are
// returned in skipped.
func ReadBans(ctx context.Context, path string, now time.Time) (bans []Ban, skipped []string, err error) {
	q := url.Values{"mode": {"ro"}, "_busy_timeout": {"5000"}}
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT jail, ip, timeofban, bantime, bancount FROM bans`)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: read bans: %w", path, err)
	}
	defer rows.Close()
	byAddr := map[netip.Addr]Ban{}
	for rows.Next() {
		var (
			jail, ip          string
			at, length, count int64
		)
		if err := rows.Scan(&jail, &ip, &at, &length, &count); err != nil {
			return nil, nil, fmt.Errorf("%s: read bans: %w", path, err)
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("jail %s: %q is not an address", jail, ip))
			continue
		}
		b := Ban{Jail: jail, IP: addr.Unmap(), Count: int(count)}
		if length >= 0 {
			b.Until = time.Unix(at+length, 0)
			if !b.Until.After(now) {
				continue
			}
		}
		old, seen := byAddr[b.IP]
		if !seen || !old.Forever() && (b.Forever() || b.Until.After(old.Until)) {
			byAddr[b.IP] = b
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: read bans: %w", path, err)
	}
	for _, b := range byAddr {
		bans = append(bans, b)
	}
	sort.Slice(bans, func(i, j int) bool { return bans[i].IP.Less(bans[j].IP) })
	return bans, skipped, nil
}
