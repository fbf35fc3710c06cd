package main

import "testing"

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
