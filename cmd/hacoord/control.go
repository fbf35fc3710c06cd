package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/hacoord/hacoord/election"
)

// The control socket: one unix socket per daemon (control_socket, --control-socket; default
// /run/hacoord/<name>.sock), mode 0600, and every connection's peer must be uid 0 (SO_PEERCRED),
// so only root can resign, transfer or take a node out. The protocol is one JSON request line and
// one JSON reply line per connection:
//
//	-> {"op":"resign","instance":"","group":"lab"}
//	-> {"op":"transfer","group":"lab","to":"h2","timeout":"10s"}
//	-> {"op":"maintenance","group":"lab","on":true}
//	<- {"ok":true,"message":"h1 resigned: another node takes over"}
//	<- {"error":"h1 is not master of group lab (backup): nothing to resign"}
//
// instance and group pick the instance (either, or none when the daemon runs one).

const (
	defaultControlDir = "/run/hacoord"
	defaultStateDir   = "/var/lib/hacoord"
	// controlTimeout bounds a request's work in the daemon (a resign waits for the demotion and
	// one store round trip; a transfer also reads the queue).
	controlTimeout = 30 * time.Second
)

// errControlInUse is listenControl's error when a live daemon answers on the socket: the daemon
// runs on without one (resign, transfer and maintenance then reach the other daemon).
var errControlInUse = errors.New("another hacoord daemon answers there (same --name?); running without a control socket")

// defaultControlSocket is the control socket of the daemon of node unless configured:
// /run/hacoord/<node>.sock, or under $HACOORD_RUN_DIR when set (labs and tests that run several
// daemons of the same name on one machine).
func defaultControlSocket(node string) string {
	dir := defaultControlDir
	if d := os.Getenv("HACOORD_RUN_DIR"); d != "" {
		dir = d
	}
	return filepath.Join(dir, node+".sock")
}

// controlRequest is one request line.
type controlRequest struct {
	Op       string `json:"op"`
	Instance string `json:"instance,omitempty"`
	Group    string `json:"group,omitempty"`
	To       string `json:"to,omitempty"`
	Timeout  string `json:"timeout,omitempty"`
	On       bool   `json:"on,omitempty"`
}

// controlReply is one reply line.
type controlReply struct {
	OK      bool   `json:"ok,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// controlServer serves a daemon's control socket.
type controlServer struct {
	node     string
	path     string
	stateDir string
	insts    []*instance
	log      *zap.Logger
	allowUID atomic.Uint32 // the only peer uid served: 0, root (tests change it while serving)

	ln   *net.UnixListener
	wg   sync.WaitGroup
	once sync.Once

	held    map[*instance]*heldWatch  // whether each instance holds its VIPs, from its Coordinator
	groupOf map[*instance]*syncTarget // the sync group of each member of one (controlsync.go)
}

// heldWatch follows whether an instance is promoted (holds its VIPs).
type heldWatch struct {
	mu       sync.Mutex
	promoted bool
	changed  chan struct{} // closed and replaced on every change
}

func (w *heldWatch) set(promoted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.promoted != promoted {
		w.promoted = promoted
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

// waitReleased waits until the instance holds no VIP, or ctx ends.
func (w *heldWatch) waitReleased(ctx context.Context) error {
	for {
		w.mu.Lock()
		promoted, ch := w.promoted, w.changed
		w.mu.Unlock()
		if !promoted {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// listenControl applies the persisted maintenance flags to insts (before their elections start),
// then listens on the daemon's control socket: a socket file left by a daemon that died is removed;
// one a live daemon answers on is an error.
func listenControl(p *plan, insts []*instance, log *zap.Logger) (*controlServer, error) {
	s := &controlServer{node: p.node, path: p.control, stateDir: p.stateDir, insts: insts, log: log.Named("control"),
		held: map[*instance]*heldWatch{}, groupOf: syncTargets(p, insts)}
	for _, in := range insts {
		if err := s.restoreMaintenance(in); err != nil {
			return nil, err
		}
		if in.co != nil {
			w := &heldWatch{changed: make(chan struct{})}
			s.held[in] = w
			in.co.OnChange(func(st election.Status) { w.set(st.Promoted) })
		}
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", s.path, err)
	}
	if c, err := net.DialTimeout("unix", s.path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: %w", s.path, errControlInUse)
	} else if _, serr := os.Lstat(s.path); serr == nil {
		s.log.Info("removing a stale control socket (its daemon is gone)", zap.String("path", s.path), zap.Error(err))
		if err := os.Remove(s.path); err != nil {
			return nil, fmt.Errorf("control socket %s: remove stale socket: %w", s.path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", s.path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(s.path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", s.path, err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Close stops serving and removes the socket file; it waits for the requests being served.
func (s *controlServer) Close() {
	s.once.Do(func() {
		s.ln.Close()
		s.wg.Wait()
	})
}

func (s *controlServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

func (s *controlServer) handle(c *net.UnixConn) {
	reply := func(r controlReply) {
		b, _ := json.Marshal(r)
		_, _ = c.Write(append(b, '\n'))
	}
	uid, err := peerUID(c)
	if err != nil {
		reply(controlReply{Error: fmt.Sprintf("cannot tell who is asking: %v", err)})
		return
	}
	if uid != s.allowUID.Load() {
		s.log.Warn("control request refused: not root", zap.Uint32("uid", uid))
		reply(controlReply{Error: fmt.Sprintf("permission denied: only root controls the daemon (you are uid %d)", uid)})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		reply(controlReply{Error: fmt.Sprintf("reading the request: %v", err)})
		return
	}
	var req controlRequest
	if err := json.Unmarshal(line, &req); err != nil {
		reply(controlReply{Error: fmt.Sprintf("malformed request: %v", err)})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	msg, err := s.do(ctx, req)
	if err != nil {
		s.log.Info("control request failed", zap.String("op", req.Op), zap.Error(err))
		reply(controlReply{Error: err.Error()})
		return
	}
	s.log.Info("control request done", zap.String("op", req.Op), zap.String("result", msg))
	reply(controlReply{OK: true, Message: msg})
}

// peerUID returns the uid of the process at the other end of c (SO_PEERCRED).
func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// pick returns the instance req names (by instance name or group), or the only one.
func (s *controlServer) pick(req controlRequest) (*instance, error) {
	var names []string
	for _, in := range s.insts {
		names = append(names, in.plan.name)
	}
	var found []*instance
	for _, in := range s.insts {
		if (req.Instance == "" || in.plan.name == req.Instance) && (req.Group == "" || in.plan.group == req.Group) {
			found = append(found, in)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) == 0 && req.Instance != "":
		return nil, fmt.Errorf("no instance %q in the daemon of %s (instances: %s)", req.Instance, s.node, strings.Join(names, ", "))
	case len(found) == 0:
		return nil, fmt.Errorf("no instance of group %q in the daemon of %s (instances: %s)", req.Group, s.node, strings.Join(names, ", "))
	default:
		return nil, fmt.Errorf("the daemon of %s runs several instances (%s): name one with --instance or --group", s.node, strings.Join(names, ", "))
	}
}

func (s *controlServer) do(ctx context.Context, req controlRequest) (string, error) {
	in, err := s.pick(req)
	if err != nil {
		return "", err
	}
	if sg := s.groupOf[in]; sg != nil {
		return s.doSync(ctx, req, sg)
	}
	g := in.plan.group
	switch req.Op {
	case "resign":
		r, ok := in.el.(election.Resigner)
		if !ok {
			return "", fmt.Errorf("backend %s of instance %s cannot resign on request: %w", in.plan.backend, in.plan.name, election.ErrUnsupported)
		}
		if err := r.Resign(ctx); errors.Is(err, election.ErrNotMaster) {
			return "", fmt.Errorf("%s is not master of group %s (%s): nothing to resign", s.node, g, instanceRole(in))
		} else if errors.Is(err, election.ErrNoOtherCandidate) {
			return "", fmt.Errorf("%s stays master of group %s: no other candidate could take over: nothing done; "+
				"use `hacoord maintenance on` to take the node out anyway", s.node, g)
		} else if err != nil {
			return "", fmt.Errorf("resign %s: %w", g, err)
		}
		if in.plan.backend == backendVRRP {
			return fmt.Sprintf("%s resigned group %s: the VIPs are released and a backup takes over "+
				"(VRRP cannot know its backups: with none, this node is master again after Master_Down_Interval)", s.node, g), nil
		}
		return fmt.Sprintf("%s resigned group %s: the VIPs are released and the next node takes over", s.node, g), nil
	case "transfer":
		tr, ok := in.el.(election.Transferer)
		if !ok {
			return "", fmt.Errorf("backend %s of instance %s cannot transfer: %w", in.plan.backend, in.plan.name, election.ErrUnsupported)
		}
		d, err := req.transferTimeout()
		if err != nil {
			return "", err
		}
		err = tr.Transfer(ctx, req.To, d)
		switch {
		case errors.Is(err, election.ErrNotMaster):
			return "", fmt.Errorf("%s is not master of group %s (%s): run the transfer on the master", s.node, g, instanceRole(in))
		case errors.Is(err, election.ErrNoSuchCandidate):
			return "", fmt.Errorf("--to %s: not a candidate of group %s (not running, unhealthy or in maintenance)", req.To, g)
		case err != nil:
			return "", fmt.Errorf("transfer %s to %s: %w", g, req.To, err)
		}
		return fmt.Sprintf("%s handed group %s over to %s (the others hold back for %v)", s.node, g, req.To, d), nil
	case "maintenance":
		m, ok := in.el.(election.Maintainer)
		if !ok {
			return "", fmt.Errorf("backend %s of instance %s has no maintenance mode: %w", in.plan.backend, in.plan.name, election.ErrUnsupported)
		}
		if err := s.persistMaintenance(in, req.On); err != nil {
			return "", err
		}
		m.SetMaintenance(req.On)
		if w := s.held[in]; req.On && w != nil {
			if err := w.waitReleased(ctx); err != nil {
				return "", fmt.Errorf("maintenance on for group %s: still holding the VIPs: %w", g, err)
			}
		}
		if req.On {
			return fmt.Sprintf("%s is in maintenance for group %s: it holds no VIP and stays out, across restarts, until 'hacoord maintenance off'", s.node, g), nil
		}
		return fmt.Sprintf("%s is out of maintenance for group %s: it campaigns again", s.node, g), nil
	}
	return "", fmt.Errorf("unknown operation %q", req.Op)
}

// maintenanceFile is where instance in's maintenance flag persists: present means on.
func (s *controlServer) maintenanceFile(in *instance) string {
	return filepath.Join(s.stateDir, fmt.Sprintf("%s.%s.maintenance", in.plan.name, s.node))
}

func (s *controlServer) persistMaintenance(in *instance, on bool) error {
	f := s.maintenanceFile(in)
	if !on {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state dir: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(s.stateDir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	b, _ := json.Marshal(map[string]any{"group": in.plan.group, "node": s.node, "since": time.Now().UTC()})
	tmp := f + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := os.Rename(tmp, f); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}

// restoreMaintenance puts in into maintenance, before its election starts, if it (or, in a sync
// group, any member: maintenanceFlag) was left so.
func (s *controlServer) restoreMaintenance(in *instance) error {
	f, err := s.maintenanceFlag(in)
	if f == "" || err != nil {
		return err
	}
	m, ok := in.el.(election.Maintainer)
	if !ok {
		in.log.Warn("maintenance flag found but this backend has no maintenance mode; ignoring it", zap.String("file", f))
		return nil
	}
	in.log.Warn("starting in maintenance (hacoord maintenance off to campaign again)", zap.String("file", f))
	m.SetMaintenance(true)
	return nil
}

// controlClient sends one request to the daemon at path and returns its message.
func controlCall(ctx context.Context, path string, req controlRequest) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return "", fmt.Errorf("no hacoord daemon is running at %s (wrong --name or --control-socket?)", path)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("permission denied on %s: only root controls the daemon", path)
	case err != nil:
		return "", fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, _ := json.Marshal(req)
	_, werr := c.Write(append(b, '\n'))
	// A refusal (not root) comes before the request is read: read it even if the write failed.
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		if werr != nil {
			return "", fmt.Errorf("control socket %s: %w", path, werr)
		}
		return "", fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	var r controlReply
	if err := json.Unmarshal(line, &r); err != nil {
		return "", fmt.Errorf("control socket %s: malformed answer: %w", path, err)
	}
	if r.Error != "" {
		return "", errors.New(r.Error)
	}
	return r.Message, nil
}
