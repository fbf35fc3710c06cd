// Package zktest runs a real ZooKeeper from Debian's zookeeper package (the jars under
// /usr/share/java, run with the java on PATH), standalone or as one server of an ensemble: Start
// and StartEnsemble for tests (temporary directories, 127.0.0.1, stopped in t.Cleanup) and
// Launch/Run for the lab, which runs each server inside a network namespace by wrapping the command
// (Options.Wrap).
//
// # Timeouts
//
// The server's tickTime defaults to FastTick (100ms) and it grants session timeouts between
// Options.MinSessionTimeout (default 2 ticks, 200ms) and Options.MaxSessionTimeout (default 100 ticks,
// 10s); a request outside that range is clamped. The session tracker expires sessions in buckets of
// one tick, so a session dies between its timeout and its timeout plus one tick after the server last
// heard from the client.
//
// # Ensembles
//
// With Options.Ensemble set the server runs as QuorumPeerMain with zoo.cfg's server.N lines and its
// id in data/myid. Its timing is chosen so that the ensemble replaces a dead or cut-off leader well
// within a 2s client session (tickTime FastTick, 100ms):
//
//   - syncLimit EnsembleSyncLimit (5 ticks, 500ms): a follower gives up on a silent leader, and a
//     leader on a silent quorum, after 500ms. A killed leader's connections close at once; a cut
//     one is noticed after syncLimit.
//   - initLimit EnsembleInitLimit (10 ticks, 1s): followers connect to and sync with a new leader
//     within 1s (the lab's trees are tiny), else the election starts over.
//   - zookeeper.cnxTimeout = syncLimit (default 5s): a vote sent to a member that is cut off (its
//     packets dropped, so the connect hangs) blocks the sender's election for at most 500ms.
//   - zookeeper.fastleader.maxNotificationInterval 1s (default 60s): a server that hears no votes
//     re-sends its own at least every second, so an ensemble that lost its quorum elects a leader
//     within about a second of the quorum returning.
//
// Fast leader election itself waits finalizeWait (200ms, fixed) once it has a quorum's votes, so a
// leader kill costs about 200-400ms of election plus the followers' sync; clients reconnect to any
// server that serves and keep their sessions (the new leader gives every session a fresh timeout).
// The leader's four-letter word "srvr" says "Mode: leader" (Server.Status).
//
// # Ports
//
// ZooKeeper cannot listen on port 0 (clientPort=0 means "no client port"), and it prints no line that
// names a kernel-chosen port. Start therefore asks the kernel for a free port (bind 127.0.0.1:0, note
// the port, close) and hands it to the server. Another process can take the port in the instant before
// the JVM binds it; Start detects the failed bind and tries again with a fresh port (up to three
// times). Launch and Run take a fixed address from the caller.
package zktest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/internal/testenv"
)

// FastTick is the default tickTime: sessions can be as short as 2 ticks (200ms).
const FastTick = 100 * time.Millisecond

// Jar is where Debian's zookeeper package (libzookeeper-java) installs the server; its manifest names
// the jars it needs. SimpleLogger, when present, sends the server's log to its stderr.
const (
	Jar          = "/usr/share/java/zookeeper.jar"
	SimpleLogger = "/usr/share/java/slf4j-simple.jar"
)

// MainClass is the standalone server's entry point; QuorumMainClass an ensemble server's.
const (
	MainClass       = "org.apache.zookeeper.server.ZooKeeperServerMain"
	QuorumMainClass = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
)

// Ensemble timing (see the package comment), in ticks.
const (
	EnsembleInitLimit = 10
	EnsembleSyncLimit = 5
)

// Default quorum (follower to leader) and leader-election ports of an ensemble's servers.
const (
	QuorumPort   = 2888
	ElectionPort = 3888
)

// Peer is one server of an ensemble, as a zoo.cfg server.N line names it.
type Peer struct {
	ID   int        // server.ID, 1..255
	Addr netip.Addr // where its quorum and election ports listen
	// QuorumPort and ElectionPort default to QuorumPort and ElectionPort.
	QuorumPort, ElectionPort uint16
}

const (
	readyTimeout = 30 * time.Second // JVM start plus snapshot load on a loaded machine
	stopGrace    = 5 * time.Second  // SIGTERM to SIGKILL
	logName      = "zookeeper.log"
)

// Options configures Launch, Run and Start.
type Options struct {
	// Dir holds zoo.cfg, the data directory (Dir/data) and the server log (Dir/zookeeper.log).
	// Required by Launch and Run; Start uses a t.TempDir.
	Dir string
	// ClientAddr is the address the server listens on for clients. Required by Launch and Run, with
	// a non-zero port; Start picks 127.0.0.1 and a free port.
	ClientAddr netip.AddrPort
	// TickTime is ZooKeeper's basic time unit; default FastTick.
	TickTime time.Duration
	// MinSessionTimeout and MaxSessionTimeout bound the session timeouts the server grants; defaults
	// 2 and 100 ticks. ZooKeeper works in whole milliseconds.
	MinSessionTimeout, MaxSessionTimeout time.Duration
	// Java is the java binary; default the one on PATH.
	Java string
	// Classpath is the server's class path; default Jar plus SimpleLogger when present.
	Classpath string
	// Wrap, when set, adjusts the command before it starts: the lab prefixes `ip netns exec NAME`
	// (WrapArgv adapts an argv rewriter). The server is started in its own process group, which
	// Stop signals as a whole.
	Wrap func(*exec.Cmd)
	// Dial is used by the readiness probe (the "ruok" four-letter word) and Server.FourLetter;
	// default a plain TCP dial. The lab passes one that dials from inside the server's namespace.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Ensemble lists every server of a replicated ZooKeeper, this one included; empty: standalone.
	Ensemble []Peer
	// MyID is this server's Peer.ID in Ensemble.
	MyID int
	// InitLimit and SyncLimit (in ticks) of an ensemble; defaults EnsembleInitLimit and
	// EnsembleSyncLimit.
	InitLimit, SyncLimit int
}

// WrapArgv adapts a function that rewrites a command line (as internal/lab's StoreEnv.Wrap does:
// ["java", ...] -> ["ip", "netns", "exec", NAME, "java", ...]) to Options.Wrap.
func WrapArgv(f func(argv []string) []string) func(*exec.Cmd) {
	return func(c *exec.Cmd) {
		argv := f(append([]string{c.Path}, c.Args[1:]...))
		c.Args = argv
		c.Path = argv[0]
		if p, err := exec.LookPath(argv[0]); err == nil {
			c.Path = p
		}
	}
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("zktest: options: Dir is required")
	}
	if !o.ClientAddr.IsValid() || o.ClientAddr.Port() == 0 {
		return o, fmt.Errorf("zktest: options: ClientAddr %v: want an address with a port", o.ClientAddr)
	}
	if o.TickTime == 0 {
		o.TickTime = FastTick
	}
	if o.TickTime < time.Millisecond {
		return o, fmt.Errorf("zktest: options: TickTime %v: want at least 1ms", o.TickTime)
	}
	if o.MinSessionTimeout == 0 {
		o.MinSessionTimeout = 2 * o.TickTime
	}
	if o.MaxSessionTimeout == 0 {
		o.MaxSessionTimeout = 100 * o.TickTime
	}
	if o.MaxSessionTimeout < o.MinSessionTimeout {
		return o, fmt.Errorf("zktest: options: MaxSessionTimeout %v is below MinSessionTimeout %v",
			o.MaxSessionTimeout, o.MinSessionTimeout)
	}
	if o.Java == "" {
		p, err := exec.LookPath("java")
		if err != nil {
			return o, fmt.Errorf("zktest: %w: java not found (Debian package default-jre-headless, pulled in by zookeeper)", ErrNotInstalled)
		}
		o.Java = p
	}
	if o.Classpath == "" {
		cp, err := DefaultClasspath()
		if err != nil {
			return o, err
		}
		o.Classpath = cp
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	return o.ensembleDefaults()
}

func (o Options) ensembleDefaults() (Options, error) {
	if len(o.Ensemble) == 0 {
		if o.MyID != 0 {
			return o, fmt.Errorf("zktest: options: MyID %d without an Ensemble", o.MyID)
		}
		return o, nil
	}
	if o.InitLimit == 0 {
		o.InitLimit = EnsembleInitLimit
	}
	if o.SyncLimit == 0 {
		o.SyncLimit = EnsembleSyncLimit
	}
	if o.InitLimit < 1 || o.SyncLimit < 1 {
		return o, fmt.Errorf("zktest: options: initLimit %d, syncLimit %d: want at least 1 tick", o.InitLimit, o.SyncLimit)
	}
	peers := make([]Peer, len(o.Ensemble))
	seen := map[int]bool{}
	for i, p := range o.Ensemble {
		if p.ID < 1 || p.ID > 255 || seen[p.ID] {
			return o, fmt.Errorf("zktest: options: ensemble server id %d: want unique ids in 1..255", p.ID)
		}
		seen[p.ID] = true
		if !p.Addr.IsValid() {
			return o, fmt.Errorf("zktest: options: ensemble server %d has no address", p.ID)
		}
		if p.QuorumPort == 0 {
			p.QuorumPort = QuorumPort
		}
		if p.ElectionPort == 0 {
			p.ElectionPort = ElectionPort
		}
		peers[i] = p
	}
	o.Ensemble = peers
	if !seen[o.MyID] {
		return o, fmt.Errorf("zktest: options: MyID %d is not in the ensemble", o.MyID)
	}
	return o, nil
}

// ErrNotInstalled is returned when ZooKeeper or java is missing: tests skip (or fail under CI).
var ErrNotInstalled = errors.New("ZooKeeper not installed")

// DefaultClasspath returns Jar, plus SimpleLogger when installed, or ErrNotInstalled.
func DefaultClasspath() (string, error) {
	if _, err := os.Stat(Jar); err != nil {
		return "", fmt.Errorf("zktest: %w: %s missing (Debian package zookeeper)", ErrNotInstalled, Jar)
	}
	cp := Jar
	if _, err := os.Stat(SimpleLogger); err == nil {
		cp += string(os.PathListSeparator) + SimpleLogger
	}
	return cp, nil
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// config renders zoo.cfg.
func (o Options) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by internal/zktest\n")
	fmt.Fprintf(&b, "tickTime=%s\n", ms(o.TickTime))
	fmt.Fprintf(&b, "dataDir=%s\n", filepath.Join(o.Dir, "data"))
	fmt.Fprintf(&b, "clientPort=%d\n", o.ClientAddr.Port())
	fmt.Fprintf(&b, "clientPortAddress=%s\n", o.ClientAddr.Addr().String())
	fmt.Fprintf(&b, "minSessionTimeout=%s\n", ms(o.MinSessionTimeout))
	fmt.Fprintf(&b, "maxSessionTimeout=%s\n", ms(o.MaxSessionTimeout))
	b.WriteString("maxClientCnxns=0\n")
	b.WriteString("admin.enableServer=false\n") // no Jetty on 8080
	b.WriteString("4lw.commands.whitelist=ruok,srvr,stat,cons,mntr,dump,wchc,wchp\n")
	b.WriteString("forceSync=no\n") // test and lab data is thrown away
	if len(o.Ensemble) > 0 {
		fmt.Fprintf(&b, "initLimit=%d\n", o.InitLimit)
		fmt.Fprintf(&b, "syncLimit=%d\n", o.SyncLimit)
		for _, p := range o.Ensemble {
			fmt.Fprintf(&b, "server.%d=%s:%d:%d\n", p.ID, p.Addr, p.QuorumPort, p.ElectionPort)
		}
	}
	return b.String()
}

// javaArgs returns the JVM's arguments: a small heap, the logger settings and, for an ensemble,
// the election timing of the package comment.
func (o Options) javaArgs(cfgPath string) []string {
	args := []string{
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", // small and quick to start
		"-Dzookeeper.admin.enableServer=false",
		"-Dzookeeper.jmx.log4j.disable=true",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
	}
	main := MainClass
	if len(o.Ensemble) > 0 {
		main = QuorumMainClass
		args = append(args,
			"-Dzookeeper.cnxTimeout="+ms(time.Duration(o.SyncLimit)*o.TickTime),
			"-Dzookeeper.fastleader.maxNotificationInterval=1000")
	}
	return append(args, "-cp", o.Classpath, main, cfgPath)
}

// Server is a running ZooKeeper started by Launch or Start.
type Server struct {
	opts    Options
	cfgPath string
	logPath string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of the JVM; done is closed when it has exited (the waiter goroutine owns cmd).
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // set before done is closed
}

// Launch writes zoo.cfg (and, for an ensemble, data/myid) into o.Dir, starts the server and waits
// until it answers "ruok" (at most 30s, or until ctx is done). The caller must Stop it. A server of
// an ensemble answers "ruok" before it has found its peers: WaitServing waits for that.
func Launch(ctx context.Context, o Options) (*Server, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("zktest: data dir: %w", err)
	}
	s := &Server{
		opts:    o,
		cfgPath: filepath.Join(o.Dir, "zoo.cfg"),
		logPath: filepath.Join(o.Dir, logName),
	}
	if err := os.WriteFile(s.cfgPath, []byte(o.config()), 0o600); err != nil {
		return nil, fmt.Errorf("zktest: write %s: %w", s.cfgPath, err)
	}
	if len(o.Ensemble) > 0 {
		myid := filepath.Join(o.Dir, "data", "myid")
		if err := os.WriteFile(myid, []byte(strconv.Itoa(o.MyID)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("zktest: write %s: %w", myid, err)
		}
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// start runs the JVM and waits for it to answer; on failure the process is gone and the error carries
// the end of its log.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("zktest: server on %s already running", s.opts.ClientAddr)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("zktest: open log: %w", err)
	}
	fmt.Fprintf(logf, "=== zktest: starting ZooKeeper on %s at %s\n", s.opts.ClientAddr, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.opts.Java, s.opts.javaArgs(s.cfgPath)...)
	cmd.Dir = s.opts.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// No Pdeathsig: it fires when the forking OS thread exits, which the Go runtime may do at any time.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.opts.Wrap != nil {
		s.opts.Wrap(cmd)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("zktest: start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()

	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := s.waitReady(rctx, p); err != nil {
		p.kill()
		return fmt.Errorf("zktest: ZooKeeper on %s not ready: %w\n--- %s (last 30 lines):\n%s",
			s.opts.ClientAddr, err, s.logPath, s.tail(30))
	}
	s.proc = p
	return nil
}

// waitReady polls "ruok" until the server answers "imok", the process exits or ctx is done.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if Ruok(ctx, s.opts.Dial, s.opts.ClientAddr.String()) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("server exited: %v", p.err)
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// Ruok reports whether the ZooKeeper at addr answers the "ruok" four-letter word with "imok". dial
// nil dials plainly.
func Ruok(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string) bool {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := dial(cctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	dl, _ := cctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := c.Write([]byte("ruok")); err != nil {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(c, 16))
	return string(b) == "imok"
}

// FourLetter sends a four-letter word (ruok, srvr, cons, wchp, ...: those in the generated
// 4lw.commands.whitelist) to the server at addr and returns its answer.
func FourLetter(ctx context.Context, addr, word string) (string, error) {
	var d net.Dialer
	return fourLetter(ctx, d.DialContext, addr, word)
}

func fourLetter(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr, word string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dial(cctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("zktest: %s to %s: %w", word, addr, err)
	}
	defer c.Close()
	dl, _ := cctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := c.Write([]byte(word)); err != nil {
		return "", fmt.Errorf("zktest: %s to %s: %w", word, addr, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil {
		return "", fmt.Errorf("zktest: %s to %s: %w", word, addr, err)
	}
	return string(b), nil
}

// FourLetter sends a four-letter word to the server, dialling with Options.Dial.
func (s *Server) FourLetter(ctx context.Context, word string) (string, error) {
	return fourLetter(ctx, s.opts.Dial, s.Addr(), word)
}

// Status is what a server says of itself in answer to "srvr".
type Status struct {
	// Mode is "leader", "follower", "observer" or "standalone"; "" while the server does not serve
	// (a member of an ensemble without a quorum, or one still looking for its leader).
	Mode string
	// Zxid is the last transaction id it has seen; its high 32 bits are the leader's epoch.
	Zxid int64
}

// Serving reports whether the server answers clients.
func (st Status) Serving() bool { return st.Mode != "" }

// Epoch returns the epoch of Zxid: it rises with every elected leader.
func (st Status) Epoch() int64 { return st.Zxid >> 32 }

// ParseSrvr parses the answer to "srvr" (a server that does not serve says so instead: the zero
// Status).
func ParseSrvr(out string) (Status, error) {
	var st Status
	if strings.Contains(out, "not currently serving") {
		return st, nil
	}
	found := false
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Mode":
			st.Mode, found = v, true
		case "Zxid":
			z, err := strconv.ParseInt(strings.TrimPrefix(v, "0x"), 16, 64)
			if err != nil {
				return Status{}, fmt.Errorf("zktest: srvr: zxid %q: %w", v, err)
			}
			st.Zxid = z
		}
	}
	if !found {
		return Status{}, fmt.Errorf("zktest: srvr: no Mode in %q", out)
	}
	return st, nil
}

// Status asks the server for its mode and zxid ("srvr").
func (s *Server) Status(ctx context.Context) (Status, error) {
	out, err := s.FourLetter(ctx, "srvr")
	if err != nil {
		return Status{}, err
	}
	return ParseSrvr(out)
}

// WaitServing waits until the server serves clients (for a server of an ensemble: it has found a
// leader, or is one, and has synced), polling "srvr" every 50ms, or until ctx is done or the
// server exits.
func (s *Server) WaitServing(ctx context.Context) (Status, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	done := s.Done()
	for {
		st, err := s.Status(ctx)
		if err == nil && st.Serving() {
			return st, nil
		}
		select {
		case <-done:
			return Status{}, fmt.Errorf("zktest: ZooKeeper on %s exited before serving", s.Addr())
		case <-ctx.Done():
			return Status{}, fmt.Errorf("zktest: ZooKeeper on %s not serving (last: %+v, %v): %w", s.Addr(), st, err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// CloseSession ends the session id (whose password is passwd) from outside, as if its client had
// crashed and the session had expired at once: it attaches to the session on a connection of its own
// (the server then drops the client's connection) and sends closeSession, so the server deletes the
// session's ephemeral znodes and fires their watches. The client learns that its session is gone when
// it reconnects. The client must be cut off meanwhile (a faultnet proxy), or its immediate reconnect
// may take the session back before the close arrives. The connect and close requests are hand-encoded (ZooKeeper's ConnectRequest and a
// RequestHeader with type closeSession, -11, written by zk.CloseSession, the fence guard's own).
func CloseSession(ctx context.Context, addr string, id int64, passwd []byte) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := zkb.CloseSession(cctx, []string{addr}, id, passwd, 5*time.Second); err != nil {
		return fmt.Errorf("zktest: %w", err)
	}
	return nil
}

// kill stops the process group: SIGTERM, then SIGKILL after stopGrace. It waits for the exit.
func (p *process) kill() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// The JVM may have left children in the group (it does not, but a Wrap might): reap the rest.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// Addr returns the client address, host:port.
func (s *Server) Addr() string { return s.opts.ClientAddr.String() }

// AddrPort returns the client address.
func (s *Server) AddrPort() netip.AddrPort { return s.opts.ClientAddr }

// Options returns the options the server runs with (defaults filled in).
func (s *Server) Options() Options { return s.opts }

// LogPath returns the path of the server's log file.
func (s *Server) LogPath() string { return s.logPath }

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

// Done returns a channel closed when the current server process exits (a closed channel when it is
// stopped).
func (s *Server) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.proc.done
}

// Stop stops the server (SIGTERM to its process group, SIGKILL after 5s) and waits for it to exit.
// The data directory stays, so Restart brings back the same tree and sessions. Stop is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Kill stops the server with SIGKILL at once, like a crash; see Stop.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Restart starts the server again on the same address and data directory (stopping it first if it
// runs). Sessions whose timeout has not passed survive: the server reloads them from its log and
// gives each a fresh timeout.
func (s *Server) Restart(ctx context.Context) error {
	s.Stop()
	return s.start(ctx)
}

// Tail returns the last n lines of the server's log.
func (s *Server) Tail(n int) string { return s.tail(n) }

func (s *Server) tail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run serves ZooKeeper until ctx is done, then stops it and returns nil. It returns an error when the
// server cannot start (within 30s) or exits on its own. ready, if not nil, is called once the server
// answers.
func Run(ctx context.Context, o Options, ready func(*Server)) error {
	s, err := Launch(ctx, o)
	if err != nil {
		return err
	}
	defer s.Stop()
	if ready != nil {
		ready(s)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-s.Done():
		return fmt.Errorf("zktest: ZooKeeper on %s exited\n%s", s.Addr(), s.Tail(30))
	}
}

// Start starts a ZooKeeper on 127.0.0.1 and a free port (see the package comment) in a t.TempDir,
// waits (at most 30s) until it answers, and stops it in t.Cleanup. Zero fields of o take their
// defaults; o.Dir and o.ClientAddr are ignored. When ZooKeeper or java is not installed the test is
// skipped (failed under CI=true) with a hint.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if _, err := DefaultClasspath(); err != nil && o.Classpath == "" {
		testenv.Unavailable(t, err.Error()+"; `make test` installs zookeeper")
	}
	if o.Java == "" {
		o.Java = testenv.RequireCommand(t, "java", "Debian package default-jre-headless, a dependency of zookeeper")
	}
	o.Dir = t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("zktest: %v", err)
		}
		o.ClientAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		s, err := Launch(ctx, o)
		cancel()
		if err == nil {
			t.Cleanup(s.Stop)
			t.Logf("zktest: ZooKeeper on %s (tick %v, sessions %v..%v), log %s", s.Addr(),
				s.opts.TickTime, s.opts.MinSessionTimeout, s.opts.MaxSessionTimeout, s.logPath)
			return s
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	t.Fatal(lastErr)
	return nil
}

// StartEnsemble starts an ensemble of n servers on 127.0.0.1 (free client, quorum and election
// ports, see the package comment; o.Ensemble, o.MyID, o.Dir and o.ClientAddr are ignored, other
// zero fields take their defaults), waits (at most 30s) until every server serves, and stops them
// in t.Cleanup. Server i has id i+1. Skips like Start when ZooKeeper is missing.
func StartEnsemble(t testing.TB, n int, o Options) []*Server {
	t.Helper()
	if _, err := DefaultClasspath(); err != nil && o.Classpath == "" {
		testenv.Unavailable(t, err.Error()+"; `make test` installs zookeeper")
	}
	if o.Java == "" {
		o.Java = testenv.RequireCommand(t, "java", "Debian package default-jre-headless, a dependency of zookeeper")
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		servers, err := launchEnsemble(t, n, o)
		if err == nil {
			for _, s := range servers {
				t.Cleanup(s.Stop)
			}
			t.Logf("zktest: ensemble of %d on %s (tick %v, initLimit %d, syncLimit %d)", n, ConnString(servers),
				servers[0].opts.TickTime, servers[0].opts.InitLimit, servers[0].opts.SyncLimit)
			return servers
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	t.Fatal(lastErr)
	return nil
}

func launchEnsemble(t testing.TB, n int, o Options) ([]*Server, error) {
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	var peers []Peer
	var clients []netip.AddrPort
	for i := range n {
		var ports [3]uint16
		for j := range ports {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[j] = p
		}
		peers = append(peers, Peer{ID: i + 1, Addr: lo, QuorumPort: ports[1], ElectionPort: ports[2]})
		clients = append(clients, netip.AddrPortFrom(lo, ports[0]))
	}
	var servers []*Server
	stopAll := func() {
		for _, s := range servers {
			s.Stop()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for i := range n {
		so := o
		so.Dir, so.ClientAddr, so.Ensemble, so.MyID = t.TempDir(), clients[i], peers, i+1
		s, err := Launch(ctx, so)
		if err != nil {
			stopAll()
			return nil, err
		}
		servers = append(servers, s)
	}
	for _, s := range servers {
		if _, err := s.WaitServing(ctx); err != nil {
			err = fmt.Errorf("%w\n--- %s (last 30 lines):\n%s", err, s.logPath, s.tail(30))
			stopAll()
			return nil, err
		}
	}
	return servers, nil
}

// ConnString returns the servers' client addresses as a ZooKeeper connection string, host:port,...
func ConnString(servers []*Server) string {
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	return strings.Join(addrs, ",")
}

// freePort asks the kernel for a free TCP port on 127.0.0.1 and releases it (see the package
// comment for the race this leaves and how Start handles it).
func freePort() (uint16, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port: %w", err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}
