package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/hacoord/hacoord/internal/testenv"
)

// serverConns counts the established TCP connections whose local end is addr (host:port on
// 127.0.0.1) in the root namespace: the connections a server on addr has accepted.
func serverConns(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	// /proc/net is the netns of the process's first thread, which a test may have switched into a
	// namespace (netnstest.NS.Do); this thread's is the root namespace's, where the store is.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open("/proc/thread-self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := fmt.Sprintf("0100007F:%04X", p)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 3 && fs[1] == want && fs[3] == "01" { // local address, state ESTABLISHED
			n++
		}
	}
	return n
}

// The etcd instances of one daemon share one client: two instances, each master of its own
// election with its own lease, add one connection to the store, not two.
func TestEtcdInstancesShareOneClient(t *testing.T) {
	testenv.RequireRoot(t)
	st := startStore(t, backendEtcd)
	before := serverConns(t, st.endpoint)
	body := strings.NewReplacer("{{backend}}", st.backend, "{{store}}", st.lines).Replace(twoInstances)
	a, _ := twoNodes(t)
	n := startNode(t, a, "n1", st.endpoint, body)
	eventually(t, "n1 master of A and B", func() bool {
		return n.status(t, "A").Promoted && n.status(t, "B").Promoted
	}, n)
	if ta, tb := n.status(t, "A").Term, n.status(t, "B").Term; ta == 0 || tb == 0 {
		t.Fatalf("terms %d and %d: each instance has a lease and term of its own", ta, tb)
	}
	if got := serverConns(t, st.endpoint) - before; got != 1 {
		t.Fatalf("the daemon holds %d connections to etcd for its two instances, want 1 (one shared client)", got)
	}
	n.exit(t)
}
