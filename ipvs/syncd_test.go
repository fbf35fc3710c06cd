package ipvs

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/mdlayher/genetlink"
)

// The bytes the kernel's ip_vs_genl_set_daemon parses: IPVS_CMD_ATTR_DAEMON (3, nested) holding
// STATE (1, u32), MCAST_IFN (2, NUL-terminated) and SYNC_ID (3, u32), in host byte order.
func TestNewDaemonMsgEncoding(t *testing.T) {
	m, err := newDaemonMsg(SyncDaemon{State: SyncBackup, Interface: "eth1", SyncID: 7})
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Command != 9 || m.Header.Version != 1 {
		t.Errorf("header %+v, want command 9 (IPVS_CMD_NEW_DAEMON) version 1", m.Header)
	}
	want := []byte{
		4 + 8 + 12 + 8, 0, 3, 0x80, // nested IPVS_CMD_ATTR_DAEMON (NLA_F_NESTED)
		8, 0, 1, 0, 2, 0, 0, 0, // STATE = 2 (backup)
		9, 0, 2, 0, 'e', 't', 'h', '1', 0, 0, 0, 0, // MCAST_IFN "eth1\0", padded to 4
		8, 0, 3, 0, 7, 0, 0, 0, // SYNC_ID = 7
	}
	if !bytes.Equal(m.Data, want) {
		t.Errorf("IPVS_CMD_NEW_DAEMON data\n got % x\nwant % x", m.Data, want)
	}
}

func TestDelDaemonMsgEncoding(t *testing.T) {
	m, err := delDaemonMsg(SyncMaster)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{12, 0, 3, 0x80, 8, 0, 1, 0, 1, 0, 0, 0}
	if m.Header.Command != 10 || !bytes.Equal(m.Data, want) {
		t.Errorf("IPVS_CMD_DEL_DAEMON: command %d data % x, want 10 and % x", m.Header.Command, m.Data, want)
	}
}

func TestNewDaemonMsgRefuses(t *testing.T) {
	for _, d := range []SyncDaemon{
		{State: 3, Interface: "eth0"},
		{State: SyncMaster},
		{State: SyncMaster, Interface: "a-name-too-long0"},
		{State: SyncMaster, Interface: "eth0/x"},
	} {
		if _, err := newDaemonMsg(d); err == nil {
			t.Errorf("%+v encoded, want an error", d)
		}
	}
}

// decodeDaemons reads what ip_vs_genl_dump_daemons sends: one message per daemon, the kernel's
// nested attribute without NLA_F_NESTED.
func TestDecodeDaemons(t *testing.T) {
	kernel := func(state uint32, ifn string, id uint32) genetlink.Message {
		attr := func(typ uint16, v []byte) []byte {
			n := 4 + len(v)
			b := append([]byte{byte(n), byte(n >> 8), byte(typ), byte(typ >> 8)}, v...)
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
			return b
		}
		u32 := func(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
		inner := slices.Concat(attr(1, u32(state)), attr(2, append([]byte(ifn), 0)), attr(3, u32(id)))
		return genetlink.Message{Header: genetlink.Header{Command: 9, Version: 1}, Data: attr(3, inner)}
	}
	got, err := decodeDaemons([]genetlink.Message{kernel(1, "eth1", 7), kernel(2, "eth1", 7)})
	if err != nil {
		t.Fatal(err)
	}
	want := []SyncDaemon{{SyncMaster, "eth1", 7}, {SyncBackup, "eth1", 7}}
	if !slices.Equal(got, want) {
		t.Errorf("decoded %v, want %v", got, want)
	}
	// What we encode decodes to the same daemon.
	m, _ := newDaemonMsg(SyncDaemon{SyncMaster, "bond0.12", 255})
	if got, err := decodeDaemons([]genetlink.Message{m}); err != nil || !slices.Equal(got, []SyncDaemon{{SyncMaster, "bond0.12", 255}}) {
		t.Errorf("round trip: %v, %v", got, err)
	}
	if got, err := decodeDaemons(nil); err != nil || len(got) != 0 {
		t.Errorf("no daemon: %v, %v", got, err)
	}
}

func TestSyncConfigValidate(t *testing.T) {
	if err := (SyncConfig{Interface: "eth1", SyncID: 7}).Validate(); err != nil {
		t.Errorf("eth1: %v", err)
	}
	for _, c := range []SyncConfig{{}, {Interface: "way-too-long-name"}, {Interface: "a b"}} {
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "lvs_sync_daemon.interface") {
			t.Errorf("%+v: %v, want an error naming lvs_sync_daemon.interface", c, err)
		}
	}
	cfg := DefaultConfig()
	cfg.SyncDaemon = &SyncConfig{}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "lvs_sync_daemon.interface") {
		t.Errorf("Config.Validate with an empty lvs_sync_daemon: %v", err)
	}
}

// fakeSync is the kernel's daemon table: one daemon per state.
type fakeSync struct {
	running map[SyncState]SyncDaemon
	log     []string
	closed  bool
	noDev   bool
}

func (f *fakeSync) Daemons() ([]SyncDaemon, error) {
	var out []SyncDaemon
	for _, st := range []SyncState{SyncMaster, SyncBackup} {
		if d, ok := f.running[st]; ok {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeSync) Start(d SyncDaemon) error {
	if f.noDev {
		return fmt.Errorf("ipvs: start: %w", syscall.ENODEV)
	}
	if _, ok := f.running[d.State]; ok {
		return syscall.EEXIST
	}
	f.running[d.State] = d
	f.log = append(f.log, "start "+d.State.String())
	return nil
}

func (f *fakeSync) Stop(st SyncState) error {
	delete(f.running, st)
	f.log = append(f.log, "stop "+st.String())
	return nil
}

func (f *fakeSync) Close() error { f.closed = true; return nil }

func TestSyncerLifecycle(t *testing.T) {
	ctx := context.Background()
	// A SIGKILLed run left a master daemon with another id: Start replaces it with the backup.
	f := &fakeSync{running: map[SyncState]SyncDaemon{SyncMaster: {SyncMaster, "eth0", 1}}}
	s := newSyncer(SyncConfig{Interface: "eth1", SyncID: 7}, f, nil)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[SyncState]SyncDaemon{SyncBackup: {SyncBackup, "eth1", 7}}
	if len(f.running) != 1 || f.running[SyncBackup] != want[SyncBackup] {
		t.Fatalf("after Start: %v, want only %v", f.running, want)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Promote(ctx))
	must(s.Promote(ctx)) // idempotent
	if d, ok := f.running[SyncMaster]; !ok || d != (SyncDaemon{SyncMaster, "eth1", 7}) || len(f.running) != 2 {
		t.Fatalf("master: %v, want the master and the backup daemon on eth1 id 7", f.running)
	}
	must(s.Demote(ctx))
	must(s.Demote(ctx))
	if _, ok := f.running[SyncMaster]; ok || len(f.running) != 1 {
		t.Fatalf("after Demote: %v, want the backup daemon alone", f.running)
	}
	must(s.Promote(ctx))
	must(s.Close())
	must(s.Close())
	if len(f.running) != 0 || !f.closed {
		t.Fatalf("after Close: %v (closed %v), want no daemon", f.running, f.closed)
	}
	if got := strings.Join(f.log, ", "); got != "stop master, start backup, start master, stop master, start master, stop master, stop backup" {
		t.Errorf("kernel calls: %s", got)
	}
	// An interface the kernel has not: the error names the key.
	s = newSyncer(SyncConfig{Interface: "eth9"}, &fakeSync{running: map[SyncState]SyncDaemon{}, noDev: true}, nil)
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "lvs_sync_daemon.interface") {
		t.Errorf("Start on a missing interface: %v, want an error naming lvs_sync_daemon.interface", err)
	}
}

func TestFormatDaemons(t *testing.T) {
	got := FormatDaemons([]SyncDaemon{{SyncMaster, "eth0", 7}, {SyncBackup, "eth0", 7}})
	want := "master sync daemon (mcast=eth0, syncid=7)\nbackup sync daemon (mcast=eth0, syncid=7)\n"
	if got != want {
		t.Errorf("got %q, want %q (ipvsadm -L --daemon)", got, want)
	}
}
