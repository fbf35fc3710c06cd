package zk_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	zkb "github.com/hacoord/hacoord/backend/zk"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/faultnet"
	"github.com/hacoord/hacoord/internal/zktest"
)

// ensembleSession is the session timeout of the ensemble tests: the figure of issue #9 (2s, tick
// 100ms, syncLimit 5 ticks), which rides out the ensemble's leader election for a crashed leader and
// nearly so for a silent one (see zkb.Timing).
const ensembleSession = 2 * time.Second

// ensemble is three ZooKeeper servers on loopback (zktest.StartEnsemble). Every candidate reaches
// each server through a faultnet proxy of its own, so that a test can cut one candidate off one
// server, or off all of them, silently.
type ensemble struct {
	servers []*zktest.Server
	raw     *gozk.Conn // a session of the test's own, straight to the servers

	mu    sync.Mutex
	cands []*ensCandidate // of the running test
}

// ensCandidate is one candidate's way to the ensemble.
type ensCandidate struct {
	name string
	px   []*faultnet.Proxy // px[i] leads to servers[i]
	f    *faults
}

func startEnsemble(t *testing.T) *ensemble {
	servers := zktest.StartEnsemble(t, 3, zktest.Options{})
	return &ensemble{servers: servers, raw: raw(t, zktest.ConnString(servers), "")}
}

// config is a candidate's configuration over proxies px.
func (h *ensemble) config(px []*faultnet.Proxy, group, name string) zkb.Config {
	var addrs []string
	for _, p := range px {
		addrs = append(addrs, p.Addr())
	}
	c := config(strings.Join(addrs, ","), group, name)
	c.SessionTimeout = ensembleSession
	c.ConnectTimeout = ensembleSession
	return c
}

// candidate builds an Elector called name in group with its proxies, registered with the running
// test (for BreakWatches) until it ends.
func (h *ensemble) candidate(t *testing.T, group, name string) (*zkb.Elector, *ensCandidate) {
	c := &ensCandidate{name: name, f: &faults{}}
	for _, s := range h.servers {
		px, err := faultnet.New(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		c.px = append(c.px, px)
	}
	e, err := zkb.New(h.config(c.px, group, name), testLogger(t).Named(name))
	if err != nil {
		t.Fatal(err)
	}
	c.f.wrap(e)
	h.mu.Lock()
	h.cands = append(h.cands, c)
	h.mu.Unlock()
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, x := range h.cands {
			if x == c {
				h.cands = append(h.cands[:i], h.cands[i+1:]...)
				break
			}
		}
	})
	return e, c
}

// block cuts c off every server (cut) or reconnects it.
func (c *ensCandidate) block(cut bool) {
	for _, p := range c.px {
		if cut {
			p.Block()
		} else {
			p.Unblock()
		}
	}
}

// electiontest.StoreHarness.

func (h *ensemble) TTL() time.Duration { return ensembleSession }

func (h *ensemble) NewCandidate(t *testing.T, group, name string) electiontest.Candidate {
	e, c := h.candidate(t, group, name)
	// The goroutine that heals a Kill's partition is waited for before the proxies close.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	return electiontest.Candidate{
		Elector: e,
		Kill: func() {
			id, _ := c.f.session()
			gone, err := watchSession(h.raw, group, id)
			if err != nil {
				t.Errorf("kill %s: %v", name, err)
				return
			}
			c.block(true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.block(false)
				select {
				case <-gone:
				case <-ctx.Done():
				}
			}()
		},
		Partition: c.block,
	}
}

func (h *ensemble) NewObserver(t *testing.T, group string) election.Observer {
	cfg := config(zktest.ConnString(h.servers), group, "")
	cfg.SessionTimeout = ensembleSession
	o, err := zkb.NewObserver(cfg, testLogger(t).Named("observer"))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// KillStoreLeader kills the ZooKeeper leader (SIGKILL) and waits until another server leads.
func (h *ensemble) KillStoreLeader(t *testing.T) (restart func()) {
	t.Helper()
	old := h.leader(t, nil)
	killed := time.Now()
	old.Kill()
	nl := h.leader(t, old)
	t.Logf("ZooKeeper leader %s killed; %s leads %v later", old.Addr(), nl.Addr(), time.Since(killed).Round(time.Millisecond))
	return func() { h.restart(t, old) }
}

// BreakWatches moves every candidate's session to another server: it cuts the candidate off the
// server its session is on, silently, until the session shows on another server (the candidate
// notices the silence and reconnects elsewhere within the session), then heals the cut.
func (h *ensemble) BreakWatches(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	cands := append([]*ensCandidate(nil), h.cands...)
	h.mu.Unlock()
	for _, c := range cands {
		id, _ := c.f.session()
		from := h.serverOf(t, id, -1)
		c.px[from].Block()
		start := time.Now()
		to := h.serverOf(t, id, from)
		c.px[from].Unblock()
		t.Logf("%s: session %#x moved from %s to %s in %v", c.name, id, h.servers[from].Addr(),
			h.servers[to].Addr(), time.Since(start).Round(time.Millisecond))
	}
}

// leader waits until a server other than skip leads and the others serve, and returns it.
func (h *ensemble) leader(t *testing.T, skip *zktest.Server) *zktest.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		var lead *zktest.Server
		serving := 0
		for _, s := range h.servers {
			if s == skip || !s.Running() {
				continue
			}
			if st, err := s.Status(ctx); err == nil && st.Serving() {
				serving++
				if st.Mode == "leader" {
					lead = s
				}
			}
		}
		if lead != nil && serving >= 2 {
			return lead
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no ZooKeeper leader serving within %v", waitLimit)
		case <-poll.C:
		}
	}
}

// restart starts s again and waits until it serves.
func (h *ensemble) restart(t *testing.T, s *zktest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitServing(ctx); err != nil {
		t.Fatal(err)
	}
}

var sidRE = regexp.MustCompile(`sid=0x([0-9a-f]+)`)

// serverOf waits until one server other than not lists session id among its connections (the
// `cons` four-letter word) and returns its index.
func (h *ensemble) serverOf(t *testing.T, id int64, not int) int {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		for i, s := range h.servers {
			if i == not || !s.Running() {
				continue
			}
			out, err := s.FourLetter(context.Background(), "cons")
			if err != nil {
				continue
			}
			for _, m := range sidRE.FindAllStringSubmatch(out, -1) {
				if sid, _ := strconv.ParseUint(m[1], 16, 64); int64(sid) == id {
					return i
				}
			}
		}
		select {
		case <-deadline.C:
			t.Fatalf("session %#x not connected to any server (but %d) within %v", id, not, waitLimit)
		case <-poll.C:
		}
	}
}

// pause stops (SIGSTOP) or resumes the JVM of s: a stopped server is silent to its peers and its
// clients alike, as if cut off the network, while its sockets stay open.
func pause(t *testing.T, s *zktest.Server, stop bool) {
	t.Helper()
	pid := jvmPid(t, s)
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signal %v to ZooKeeper %s (pid %d): %v", sig, s.Addr(), pid, err)
	}
}

// jvmPid finds the process running s: the one whose command line names s's zoo.cfg.
func jvmPid(t *testing.T, s *zktest.Server) int {
	t.Helper()
	cfg := []byte(filepath.Join(s.Options().Dir, "zoo.cfg"))
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && bytes.Contains(cmd, []byte("java")) && bytes.Contains(cmd, cfg) {
			return pid
		}
	}
	t.Fatalf("no process runs %s", cfg)
	return 0
}

// watchSession returns a channel that receives when the candidate znode of session id in group is
// deleted (the session expired).
func watchSession(c *gozk.Conn, group string, id int64) (<-chan gozk.Event, error) {
	dir := "/hacoord/" + group + "/election"
	children, _, err := c.Children(dir)
	if err != nil {
		return nil, err
	}
	for _, ch := range children {
		ok, st, w, err := c.ExistsW(dir + "/" + ch)
		if err != nil {
			return nil, err
		}
		if ok && st.EphemeralOwner == id {
			return w, nil
		}
	}
	return nil, fmt.Errorf("no candidate znode of session %#x in %s", id, dir)
}

// The conformance suite on a 3-server ensemble, with the store-fault subtests.
func TestConformanceEnsemble(t *testing.T) {
	electiontest.Run(t, startEnsemble(t))
}
