package ipvs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"go.uber.org/zap"
)

// SyncConfig is `lvs_sync_daemon:` (keepalived's `lvs_sync_daemon <interface> <instance> [id
// <syncid>]`): the interface the sync messages go out of and come in on, and the sync id that
// pairs a master with its backups.
type SyncConfig struct {
	Interface string `yaml:"interface"`
	// SyncID is 0..255 (default 0); a backup drops messages of another id.
	SyncID uint8 `yaml:"sync_id,omitempty"`
}

// Validate names the key at fault.
func (c SyncConfig) Validate() error {
	if c.Interface == "" {
		return errors.New("lvs_sync_daemon.interface: required (the interface the directors sync over)")
	}
	if !validIfName(c.Interface) {
		return fmt.Errorf("lvs_sync_daemon.interface: %q is not an interface name", c.Interface)
	}
	return nil
}

// syncer is what a Syncer needs of a SyncConn (tests stand in a fake).
type syncer interface {
	Daemons() ([]SyncDaemon, error)
	Start(SyncDaemon) error
	Stop(SyncState) error
	Close() error
}

// Syncer runs the kernel's sync daemons for one director as keepalived does: the backup daemon
// from Start to Close, the master daemon as well while the director is master (Promote to
// Demote). It stops only what it started, but Start first stops the daemons a previous run left
// behind (a SIGKILL leaves them running in the kernel).
//
// NewSyncer opens the netlink socket and starts nothing; every method may be called from any
// goroutine.
type Syncer struct {
	cfg SyncConfig
	log *zap.Logger

	mu      sync.Mutex
	conn    syncer
	started map[SyncState]bool
}

// NewSyncer opens the kernel's IPVS for cfg. Without IPVS the error wraps ErrUnavailable.
func NewSyncer(cfg SyncConfig, log *zap.Logger) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := OpenSync()
	if err != nil {
		return nil, err
	}
	return newSyncer(cfg, c, log), nil
}

func newSyncer(cfg SyncConfig, c syncer, log *zap.Logger) *Syncer {
	if log == nil {
		log = zap.NewNop()
	}
	return &Syncer{cfg: cfg, log: log, conn: c, started: map[SyncState]bool{}}
}

func (s *Syncer) daemon(st SyncState) SyncDaemon {
	return SyncDaemon{State: st, Interface: s.cfg.Interface, SyncID: s.cfg.SyncID}
}

// Start stops the daemons left running (by a previous run, or by hand) and starts the backup
// daemon. A missing interface is an error naming lvs_sync_daemon.interface.
func (s *Syncer) Start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	left, err := s.conn.Daemons()
	if err != nil {
		return err
	}
	for _, d := range left {
		s.log.Info("stopping a sync daemon left running", zap.Stringer("daemon", d))
		if err := s.conn.Stop(d.State); err != nil {
			return err
		}
	}
	return s.start(SyncBackup)
}

func (s *Syncer) start(st SyncState) error {
	if s.started[st] {
		return nil
	}
	d := s.daemon(st)
	if err := s.conn.Start(d); err != nil {
		if errors.Is(err, syscall.ENODEV) {
			return fmt.Errorf("lvs_sync_daemon.interface: %w", err)
		}
		return err
	}
	s.started[st] = true
	s.log.Info("sync daemon started", zap.Stringer("daemon", d))
	return nil
}

func (s *Syncer) stop(st SyncState) error {
	if !s.started[st] {
		return nil
	}
	if err := s.conn.Stop(st); err != nil {
		return err
	}
	delete(s.started, st)
	s.log.Info("sync daemon stopped", zap.Stringer("daemon", s.daemon(st)))
	return nil
}

// Promote starts the master daemon beside the backup one: from now on this director's
// connections and persistence templates reach the other directors' tables.
func (s *Syncer) Promote(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start(SyncMaster)
}

// Demote stops the master daemon; the backup daemon runs on.
func (s *Syncer) Demote(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop(SyncMaster)
}

// Daemons lists the daemons the kernel runs (all of them, not only this Syncer's).
func (s *Syncer) Daemons() ([]SyncDaemon, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn.Daemons()
}

// Close stops the daemons the Syncer started and closes the socket; it is idempotent.
func (s *Syncer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := errors.Join(s.stop(SyncMaster), s.stop(SyncBackup), s.conn.Close())
	s.conn = nil
	return err
}
