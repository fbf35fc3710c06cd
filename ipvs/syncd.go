package ipvs

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// The kernel's IPVS connection synchronisation daemon (linux/ip_vs.h, net/netfilter/ipvs/ip_vs_sync.c):
// a master daemon multicasts the connections and persistence templates of its director's table
// (224.0.0.81:8848 out of one interface), a backup daemon on the other directors receives them
// into theirs, so the director that takes over already knows where each client's connections and
// persistence go. github.com/cloudflare/ipvs has no call for it: these are its generic netlink
// messages, on the same "IPVS" family.

// SyncState is a sync daemon's role, IPVS_DAEMON_ATTR_STATE.
type SyncState uint32

// The two daemons a network namespace may run, both at once (as keepalived runs them on the
// master director).
const (
	SyncMaster SyncState = 1 // IP_VS_STATE_MASTER
	SyncBackup SyncState = 2 // IP_VS_STATE_BACKUP
)

func (s SyncState) String() string {
	switch s {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// SyncDaemon is one running (or to be started) sync daemon, as IPVS_CMD_GET_DAEMON reports it.
type SyncDaemon struct {
	State     SyncState
	Interface string // IPVS_DAEMON_ATTR_MCAST_IFN
	SyncID    uint8  // IPVS_DAEMON_ATTR_SYNC_ID: a backup takes only messages of its own id
}

func (d SyncDaemon) String() string {
	return fmt.Sprintf("%s sync daemon on %s, syncid %d", d.State, d.Interface, d.SyncID)
}

// Generic netlink numbers of linux/ip_vs.h.
const (
	genlName    = "IPVS"
	genlVersion = 1

	cmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON
	cmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON
	cmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON

	cmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, nested

	daemonAttrState    = 1 // IPVS_DAEMON_ATTR_STATE, u32
	daemonAttrMcastIfn = 2 // IPVS_DAEMON_ATTR_MCAST_IFN, NUL-terminated string
	daemonAttrSyncID   = 3 // IPVS_DAEMON_ATTR_SYNC_ID, u32
)

// maxIfName is IFNAMSIZ-1, the longest interface name the kernel takes.
const maxIfName = 15

// validIfName reports whether s can name a Linux interface (IFNAMSIZ, no '/' or white space).
func validIfName(s string) bool {
	return s != "" && len(s) <= maxIfName && !strings.ContainsAny(s, "/ \t\n\x00")
}

// newDaemonMsg encodes IPVS_CMD_NEW_DAEMON for d: the kernel needs all three attributes.
func newDaemonMsg(d SyncDaemon) (genetlink.Message, error) {
	if d.State != SyncMaster && d.State != SyncBackup {
		return genetlink.Message{}, fmt.Errorf("ipvs: sync daemon state %d: want master or backup", uint32(d.State))
	}
	if !validIfName(d.Interface) {
		return genetlink.Message{}, fmt.Errorf("ipvs: sync daemon interface %q: not an interface name", d.Interface)
	}
	return daemonMsg(cmdNewDaemon, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(daemonAttrState, uint32(d.State))
		ae.String(daemonAttrMcastIfn, d.Interface)
		ae.Uint32(daemonAttrSyncID, uint32(d.SyncID))
	})
}

// delDaemonMsg encodes IPVS_CMD_DEL_DAEMON for the daemon of state s.
func delDaemonMsg(s SyncState) (genetlink.Message, error) {
	return daemonMsg(cmdDelDaemon, func(ae *netlink.AttributeEncoder) { ae.Uint32(daemonAttrState, uint32(s)) })
}

func daemonMsg(cmd uint8, attrs func(*netlink.AttributeEncoder)) (genetlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(cmdAttrDaemon, func(nae *netlink.AttributeEncoder) error {
		attrs(nae)
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		return genetlink.Message{}, fmt.Errorf("ipvs: encode sync daemon message: %w", err)
	}
	return genetlink.Message{Header: genetlink.Header{Command: cmd, Version: genlVersion}, Data: b}, nil
}

// decodeDaemons decodes the replies to IPVS_CMD_GET_DAEMON: one message per running daemon, its
// attributes nested in IPVS_CMD_ATTR_DAEMON.
func decodeDaemons(msgs []genetlink.Message) ([]SyncDaemon, error) {
	var out []SyncDaemon
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return nil, fmt.Errorf("ipvs: decode sync daemons: %w", err)
		}
		for ad.Next() {
			if ad.Type() != cmdAttrDaemon {
				continue
			}
			var d SyncDaemon
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					switch nad.Type() {
					case daemonAttrState:
						d.State = SyncState(nad.Uint32())
					case daemonAttrMcastIfn:
						d.Interface = nad.String()
					case daemonAttrSyncID:
						d.SyncID = uint8(nad.Uint32())
					}
				}
				return nil
			})
			out = append(out, d)
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("ipvs: decode sync daemons: %w", err)
		}
	}
	return out, nil
}

// SyncConn talks to the kernel's sync daemons over generic netlink, in the network namespace it
// was opened in (IPVS, and its daemons, are per namespace). It is not safe for concurrent use.
type SyncConn struct {
	c      *genetlink.Conn
	family genetlink.Family
}

// OpenSync opens a generic netlink socket on the kernel's IPVS family. A kernel without IPVS
// gives an error wrapping ErrUnavailable.
func OpenSync() (*SyncConn, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("%w: generic netlink: %v", ErrUnavailable, err)
	}
	f, err := c.GetFamily(genlName)
	if err != nil {
		_ = c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: the kernel has no IPVS (generic netlink family \"IPVS\" not found; load it with `modprobe ip_vs`)", ErrUnavailable)
		}
		return nil, fmt.Errorf("%w: generic netlink family IPVS: %v", ErrUnavailable, err)
	}
	return &SyncConn{c: c, family: f}, nil
}

// syncTimeout bounds every request on a SyncConn: a kernel that does not answer is an error, never
// a demote that hangs (the VIP release and the guard's come after it).
const syncTimeout = 5 * time.Second

// execute sends msg and waits at most syncTimeout for the kernel's answer.
func (s *SyncConn) execute(msg genetlink.Message, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	if err := s.c.SetDeadline(time.Now().Add(syncTimeout)); err != nil {
		return nil, err
	}
	return s.c.Execute(msg, s.family.ID, flags)
}

// Close closes the socket; the daemons run on.
func (s *SyncConn) Close() error { return s.c.Close() }

// Daemons lists the running sync daemons (IPVS_CMD_GET_DAEMON), none when none runs.
func (s *SyncConn) Daemons() ([]SyncDaemon, error) {
	msg := genetlink.Message{Header: genetlink.Header{Command: cmdGetDaemon, Version: genlVersion}}
	msgs, err := s.execute(msg, netlink.Request|netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("ipvs: list sync daemons: %w", err)
	}
	return decodeDaemons(msgs)
}

// Start starts d (IPVS_CMD_NEW_DAEMON). The kernel refuses a second daemon of the same state
// with EEXIST, an interface it has not with ENODEV.
func (s *SyncConn) Start(d SyncDaemon) error {
	msg, err := newDaemonMsg(d)
	if err != nil {
		return err
	}
	if _, err := s.execute(msg, netlink.Request|netlink.Acknowledge); err != nil {
		if errors.Is(err, syscall.ENODEV) {
			return fmt.Errorf("ipvs: start the %s: no interface %s: %w", d, d.Interface, err)
		}
		return fmt.Errorf("ipvs: start the %s: %w", d, err)
	}
	return nil
}

// Stop stops the daemon of state st (IPVS_CMD_DEL_DAEMON); stopping one that does not run is
// not an error.
func (s *SyncConn) Stop(st SyncState) error {
	msg, err := delDaemonMsg(st)
	if err != nil {
		return err
	}
	if _, err := s.execute(msg, netlink.Request|netlink.Acknowledge); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("ipvs: stop the %s sync daemon: %w", st, err)
	}
	return nil
}

// FormatDaemons prints the sync daemons as `ipvsadm -L --daemon` does, one line each.
func FormatDaemons(ds []SyncDaemon) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%s sync daemon (mcast=%s, syncid=%d)\n", d.State, d.Interface, d.SyncID)
	}
	return b.String()
}
