package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/internal/lab"
)

// labFlags are the flags demo and bench share.
type labFlags struct {
	hacoord string
	backend string
	impl    string
	advert  time.Duration
	nodes   int
	ttl     time.Duration
	extra   []string
	dir     string
	verbose bool
	jitter  time.Duration
	// members is the store's member count; etcdTick and etcdElection its raft timing (0: defaults).
	members                uint
	etcdTick, etcdElection uint
	// profile, if set, is a timing profile (lab.SoakProfile): the store's timing and the TTL.
	profile string
}

func (f *labFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.hacoord, "hacoord", "", `hacoord binary (default: $HACOORD_BIN, else "hacoord" next to this binary, else in PATH)`)
	fs.StringVar(&f.backend, "backend", "etcd", "backend: etcd, zk (ZooKeeper; needs java and Debian's zookeeper) or vrrp (native VRRP, no store)")
	fs.StringVar(&f.impl, "impl", "hacoord", "what runs on the nodes: hacoord, or keepalived (backend vrrp only) for comparison")
	fs.DurationVar(&f.advert, "advert-int", time.Second, "VRRP advert interval (backend vrrp)")
	fs.IntVar(&f.nodes, "nodes", 3, "number of nodes")
	fs.DurationVar(&f.ttl, "ttl", 2*time.Second, "daemons' --lease-ttl (whole seconds for etcd)")
	fs.StringArrayVar(&f.extra, "daemon-arg", nil, "extra argument for every daemon (repeat)")
	fs.StringVar(&f.dir, "dir", "", "directory for logs and store data, kept afterwards (default: a temporary directory, removed unless the run failed)")
	fs.DurationVar(&f.jitter, "jitter", -1, "random wait in [0, jitter) before each fault, to vary its phase against the keepalives (default TTL/2 for bench, 0 for demo)")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "print lab progress")
	fs.UintVar(&f.members, "store-members", 1, "store members (etcd members or ZooKeeper servers), one per namespace: 1, 3, 5 or 7; store scenarios need 3 or more")
	fs.UintVar(&f.etcdTick, "etcd-heartbeat-ms", 0, "raft heartbeat of the etcd members in ms (default 20 alone, the fast profile; 100 in a cluster, etcd's own)")
	fs.StringVar(&f.profile, "profile", "", "timing profile of etcd or zk: fast (zk tickTime 100ms, 300ms session; etcd election 500ms, TTL 1s) or default (zk tickTime 2s, 4s session; etcd election 1s, TTL 2s); sets the store's timing and the TTL, overriding --ttl and --etcd-*-ms")
	fs.UintVar(&f.etcdElection, "etcd-election-ms", 0, "raft election timeout of the etcd members in ms (default 200 alone; 1000 in a cluster, etcd's own); the lease TTL must be at least 1.5x it")
}

func (f *labFlags) hacoordBin() (string, error) {
	if f.hacoord != "" {
		return f.hacoord, nil
	}
	if p := os.Getenv("HACOORD_BIN"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "hacoord")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("hacoord"); err == nil {
		return p, nil
	}
	return "", errors.New(`no hacoord binary: pass --hacoord (go build -o bin/hacoord ./cmd/hacoord)`)
}

// finish removes a closed lab's directory (logs) unless --dir named it or the run failed, and
// says where the logs are, if anywhere.
func (f *labFlags) finish(l *lab.Lab, err error) string {
	if f.dir != "" || err != nil {
		return "logs kept in " + l.Dir()
	}
	if rerr := os.RemoveAll(l.Dir()); rerr != nil {
		return fmt.Sprintf("removing %s: %v", l.Dir(), rerr)
	}
	return "no logs kept (pass --dir to keep them)"
}

// teardown closes l at the end of a run that returned err: after a failure of the run's own (not
// ctx ending) it prints the daemons' last log lines first; then it prints format with finish's
// summary. Runs defer it with their named error.
func (f *labFlags) teardown(ctx context.Context, l *lab.Lab, out io.Writer, err error, format string) {
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(out, l.Tails(15))
	}
	l.Close()
	fmt.Fprintf(out, format, f.finish(l, err))
}

// newLab builds the lab; the caller must Close it (also on error paths: it is nil then).
func (f *labFlags) newLab(ctx context.Context, out io.Writer) (*lab.Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces): run with sudo")
	}
	bin, err := f.hacoordBin()
	if err != nil {
		return nil, err
	}
	o := lab.Options{Nodes: f.nodes, Backend: f.backend, Impl: f.impl, AdvertInt: f.advert, TTL: f.ttl, ExtraArgs: f.extra, HacoordBin: bin, Dir: f.dir, Jitter: f.jitter,
		StoreMembers: int(f.members)}
	if f.backend == "etcd" && (f.etcdTick != 0 || f.etcdElection != 0) {
		o.Store = &lab.EtcdStore{TickMs: f.etcdTick, ElectionMs: f.etcdElection}
	}
	if f.profile != "" {
		p, err := lab.SoakProfile(f.backend, f.profile)
		if err != nil {
			return nil, fmt.Errorf("--profile: %w", err)
		}
		o.Store, o.TTL = p.Store, p.TTL
	}
	if f.verbose {
		o.Logf = func(format string, args ...any) { fmt.Fprintf(out, "  lab: "+format+"\n", args...) }
	}
	bctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return lab.New(bctx, o)
}
