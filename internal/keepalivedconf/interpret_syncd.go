package keepalivedconf

import "fmt"

// SyncDaemon is keepalived's IPVS connection synchronisation: `lvs_sync_daemon <interface>
// <vrrp_instance> [id <syncid>] [maxlen <n>] [port <n>] [ttl <n>] [group <addr>]` in global_defs,
// or the older `lvs_sync_daemon_interface <interface>` in a vrrp_instance.
type SyncDaemon struct {
	Pos       Pos
	Keyword   string
	Interface string
	Instance  string
	ID        Opt[int] // unset: the instance's virtual_router_id, as keepalived does
}

// SyncDaemonOut is hacoord's `lvs_sync_daemon:` of an instance.
type SyncDaemonOut struct {
	Interface string `yaml:"interface"`
	SyncID    int    `yaml:"sync_id"`
}

func (in *interp) syncDaemon(n *Node) {
	in.noBlock(n)
	if len(n.Args) < 2 {
		in.warnf(n, "needs an interface and a vrrp_instance; ignored (keepalived: lvs_sync_daemon requires interface, VRRP instance)")
		return
	}
	sd := &SyncDaemon{Pos: n.Pos, Keyword: n.Keyword, Interface: n.Args[0], Instance: n.Args[1]}
	for i := 2; i < len(n.Args); i += 2 {
		opt := n.Args[i]
		if i+1 >= len(n.Args) {
			in.warnf(n, "%s needs a value; ignored", opt)
			break
		}
		v := n.Args[i+1]
		switch opt {
		case "id":
			x, ok := parseUint(v, 0, 255)
			if !ok {
				in.warnf(n, "id %q is not 0..255; ignored (keepalived: invalid lvs_sync_daemon id)", v)
				continue
			}
			sd.ID = set(n, int(x))
		case "maxlen", "port", "ttl", "group":
			in.warnf(n, "%s %s dropped: hacoord starts the kernel's sync daemon with its defaults (port 8848, group 224.0.0.81, ttl 1, the interface's MTU)", opt, v)
		default:
			in.warnf(n, "unknown option %q; ignored", opt)
			i-- // keepalived's options come in pairs; resynchronise on the next word
		}
	}
	if in.k.SyncDaemon != nil {
		in.warnf(n, "set again; the last one counts (keepalived runs one sync daemon)")
	}
	in.k.SyncDaemon = sd
}

func (in *interp) syncDaemonInterface(n *Node, inst string) {
	v, ok := in.value(n)
	if !ok {
		return
	}
	if in.k.SyncDaemon != nil {
		in.warnf(n, "lvs_sync_daemon is set already (%s on %s); this one counts", in.k.SyncDaemon.Instance, in.k.SyncDaemon.Interface)
	}
	in.k.SyncDaemon = &SyncDaemon{Pos: n.Pos, Keyword: n.Keyword, Interface: v, Instance: inst}
}

// syncDaemon puts lvs_sync_daemon under the instance it names, its sync id defaulting to the
// instance's virtual_router_id.
func (c *conv) syncDaemon(k *Keepalived, insts []InstanceOut) {
	sd := k.SyncDaemon
	if sd == nil {
		return
	}
	for i, inst := range k.Instances {
		if inst.Name != sd.Instance || i >= len(insts) {
			continue
		}
		id := sd.ID.Or(inst.VRID.Or(0))
		insts[i].LVSSyncDaemon = &SyncDaemonOut{Interface: sd.Interface, SyncID: id}
		return
	}
	c.warn(sd.Pos, sd.Keyword, "%s", fmt.Sprintf("dropped: names vrrp_instance %s, which is not in the file", sd.Instance))
}
