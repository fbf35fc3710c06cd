package health

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/netnstest"
	"github.com/hacoord/hacoord/internal/testenv"
)

func TestValidateNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings; nil: valid
	}{
		{"valid", Config{Scripts: []Script{{Name: "a", Script: "true", Weight: -20}}, Interfaces: []Interface{{Name: "eth1"}}}, nil},
		{"no name", Config{Scripts: []Script{{Script: "true"}}}, []string{"track_scripts[0].name: required"}},
		{"no script", Config{Scripts: []Script{{Name: "a", Script: "  "}}}, []string{"track_scripts[0].script: required"}},
		{"duplicate", Config{Scripts: []Script{{Name: "a", Script: "true"}, {Name: "a", Script: "true"}}},
			[]string{`track_scripts[1].name: "a" is also track_scripts[0]`}},
		{"negatives", Config{Scripts: []Script{{Name: "a", Script: "true", Interval: -time.Second, Rise: -1, Fall: -2}}},
			[]string{"track_scripts[0].interval: -1s", "track_scripts[0].rise: -1", "track_scripts[0].fall: -2"}},
		{"weight", Config{Scripts: []Script{{Name: "a", Script: "true", Weight: 300}}}, []string{"track_scripts[0].weight: 300"}},
		{"interface", Config{Interfaces: []Interface{{Name: "eth0"}, {Name: "eth0"}, {}, {Name: "a/b"}}},
			[]string{`track_interfaces[1].name: "eth0" is also track_interfaces[0]`, "track_interfaces[2].name: required", `track_interfaces[3].name: "a/b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// sink records verdicts.
type sink struct {
	mu sync.Mutex
	up map[string]bool
	ch chan struct{}
}

func newSink() *sink { return &sink{up: map[string]bool{}, ch: make(chan struct{}, 16)} }

func (s *sink) Set(name string, up bool) {
	s.mu.Lock()
	s.up[name] = up
	s.mu.Unlock()
	s.ch <- struct{}{}
}

func (s *sink) wait(t *testing.T, name string, want bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		got, ok := s.up[name]
		s.mu.Unlock()
		if ok && got == want {
			return
		}
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("check %s never reported up=%v", name, want)
		}
	}
}

// A track script starts failing, passes once it has run, and fails when its program does.
func TestScriptVerdicts(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "fail")
	m, err := New(Config{Scripts: []Script{{Name: "svc", Script: "test ! -e " + flag, Interval: 20 * time.Millisecond}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if c := m.Checks(); len(c) != 1 || c[0].Name != "svc" || c[0].Up {
		t.Fatalf("Checks() = %+v, want svc starting down", c)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s := newSink()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, s) }()
	s.wait(t, "svc", true)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.wait(t, "svc", false)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestNewRefusesMissingInterface(t *testing.T) {
	_, err := New(Config{Interfaces: []Interface{{Name: "nosuch0"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "track_interfaces[0].name: nosuch0") {
		t.Fatalf("New = %v, want an error naming track_interfaces[0].name and nosuch0", err)
	}
}

// LinkUp, the track_interface probe, tells an up link from one that is down and from one whose
// carrier is gone (the peer, or the switch port, went down), against the kernel in a namespace; a
// Monitor built in the namespace reports the loss of carrier.
func TestTrackInterface(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := netnstest.New(t, "ta"), netnstest.New(t, "tb")
	la, lb, err := netnstest.Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	var m *Monitor
	if err := a.Do(func() (err error) {
		m, err = New(Config{Interfaces: []Interface{{Name: "eth0"}}}, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if c := m.Checks(); len(c) != 1 || c[0].Name != "interface:eth0" || !c[0].Up {
		t.Fatalf("Checks() = %+v, want interface:eth0 starting up", c)
	}
	if err := LinkUp(a.Netlink, "eth0"); err != nil {
		t.Fatalf("up link: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s := newSink()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, s) }() // any goroutine: the handle was opened in the namespace
	if err := b.Netlink.LinkSetDown(lb); err != nil {
		t.Fatal(err)
	}
	s.wait(t, "interface:eth0", false)
	cancel()
	<-done
	if err := LinkUp(a.Netlink, "eth0"); err == nil || !strings.Contains(err.Error(), "no carrier") {
		t.Fatalf("peer down: %v, want no carrier", err)
	}
	if err := a.Netlink.LinkSetDown(la); err != nil {
		t.Fatal(err)
	}
	if err := LinkUp(a.Netlink, "eth0"); err == nil || !strings.Contains(err.Error(), "is down") {
		t.Fatalf("link down: %v, want is down", err)
	}
	if err := LinkUp(a.Netlink, "nosuch0"); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("missing link: %v", err)
	}
}
