package keepalivedconf

import "testing"

// lvs_sync_daemon becomes the named instance's lvs_sync_daemon:, its id defaulting to the
// instance's virtual_router_id as in keepalived; the kernel-default options are dropped with a
// warning; the old per-instance lvs_sync_daemon_interface maps the same way.
func TestLVSSyncDaemon(t *testing.T) {
	g := func(line string) string { return "global_defs {\n " + line + "\n}\n" + base("") }
	runConvCases(t, []convCase{
		{
			name: "with id",
			conf: g("lvs_sync_daemon eth1 VI_1 id 7"),
			want: map[string]string{"lvs_sync_daemon.interface": "eth1", "lvs_sync_daemon.sync_id": "7"},
		},
		{
			name:  "id defaults to the vrid",
			conf:  g("lvs_sync_daemon eth1 VI_1 maxlen 1400 port 8888"),
			want:  map[string]string{"lvs_sync_daemon.interface": "eth1", "lvs_sync_daemon.sync_id": "51"},
			diags: []string{"2: lvs_sync_daemon: maxlen 1400 dropped", "2: lvs_sync_daemon: port 8888 dropped"},
		},
		{
			name:  "unknown instance",
			conf:  g("lvs_sync_daemon eth1 VI_9"),
			want:  map[string]string{"lvs_sync_daemon": "<none>"},
			diags: []string{"2: lvs_sync_daemon: dropped: names vrrp_instance VI_9"},
		},
		{
			name:  "no instance",
			conf:  g("lvs_sync_daemon eth1"),
			want:  map[string]string{"lvs_sync_daemon": "<none>"},
			diags: []string{"2: lvs_sync_daemon: needs an interface and a vrrp_instance"},
		},
		{
			name: "lvs_sync_daemon_interface",
			conf: base(" lvs_sync_daemon_interface eth2\n"),
			want: map[string]string{"lvs_sync_daemon.interface": "eth2", "lvs_sync_daemon.sync_id": "51"},
		},
	})
}
