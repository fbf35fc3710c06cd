package main

import (
	"strings"
	"testing"
)

// lvs_sync_daemon: its interface is required, and one instance at most may set it (a top-level
// key is inherited by every listed instance, so there it is refused with two).
func TestSyncDaemonConfigRefusals(t *testing.T) {
	code, _, stderr := checkFile(t, multiHead+`instances:
  - {name: A, vips: [10.0.0.1/24], lvs_sync_daemon: {sync_id: 7}}
`)
	wantAll(t, code, stderr, "instances[0].lvs_sync_daemon.interface: required")

	code, _, stderr = checkFile(t, multiHead+`lvs_sync_daemon: {interface: lo, sync_id: 7}
instances:
  - {name: A, vips: [10.0.0.1/24]}
  - {name: B, vips: [10.0.0.2/24]}
`)
	wantAll(t, code, stderr, "lvs_sync_daemon: set for instances A, B")

	code, _, stderr = checkFile(t, multiHead+`instances:
  - name: A
    vips: [10.0.0.1/24]
    lvs_sync_daemon:
      interface: lo
      sync_id: 300
`)
	wantAll(t, code, stderr, "sync_id", "300")
}

func TestSyncDaemonConfigAccepted(t *testing.T) {
	code, _, stderr := checkFile(t, multiHead+`instances:
  - {name: A, vips: [10.0.0.1/24], lvs_sync_daemon: {interface: lo, sync_id: 7}}
  - {name: B, vips: [10.0.0.2/24]}
`)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// A reload may not add, change or remove lvs_sync_daemon: the daemons start with the daemon.
func TestSyncDaemonReloadRefused(t *testing.T) {
	vs := "virtual_servers:\n  - {address: 10.0.0.100, port: 80, real_servers: [{address: 10.0.0.11}]}\n"
	old := reloadBase + vs + "lvs_sync_daemon: {interface: lo, sync_id: 7}\n"
	for name, body := range map[string]string{
		"changed": reloadBase + vs + "lvs_sync_daemon: {interface: lo, sync_id: 8}\n",
		"removed": reloadBase + vs,
	} {
		_, err := planReload(reloadPlanOf(t, old), reloadPlanOf(t, body))
		if err == nil || !strings.Contains(err.Error(), "lvs_sync_daemon: changed") {
			t.Errorf("%s: planReload = %v, want a refusal naming lvs_sync_daemon", name, err)
		}
	}
	if _, err := planReload(reloadPlanOf(t, old), reloadPlanOf(t, old)); err != nil {
		t.Errorf("the same lvs_sync_daemon: %v", err)
	}
}
