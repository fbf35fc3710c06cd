package check

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func addrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func fast() Timing {
	return Timing{Interval: time.Millisecond, ConnectTimeout: 2 * time.Second, Retry: Retries(0), DelayBeforeRetry: time.Millisecond}
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := addrPort(t, ln.Addr().String())
	c, err := New("rs", Config{TCP: &TCP{Timing: fast()}}, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Probe(t.Context()); err != nil {
		t.Fatalf("probe of a listening port: %v", err)
	}
	ln.Close()
	if _, err := c.Probe(t.Context()); err == nil {
		t.Fatal("probe of a closed port passed")
	}
	// connect_port overrides the real server's port.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	c, _ = New("rs", Config{TCP: &TCP{Timing: fast(), ConnectPort: addrPort(t, ln2.Addr().String()).Port()}}, target, nil)
	if _, err := c.Probe(t.Context()); err != nil {
		t.Fatalf("probe with connect_port: %v", err)
	}
}

func TestHTTPProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("hello"))
		case "/created":
			w.WriteHeader(http.StatusCreated)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/host":
			_, _ = w.Write([]byte(r.Host))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	target := addrPort(t, srv.Listener.Addr().String())
	tests := []struct {
		name  string
		urls  []URL
		vhost string
		ok    bool
	}{
		{"default accepts 200", []URL{{Path: "/ok"}}, "", true},
		{"default accepts 201", []URL{{Path: "/created"}}, "", true},
		{"404 fails", []URL{{Path: "/missing"}}, "", false},
		{"expected 404", []URL{{Path: "/missing", StatusCode: 404}}, "", true},
		{"digest matches", []URL{{Path: "/ok", Digest: Digest([]byte("hello"))}}, "", true},
		{"digest upper case", []URL{{Path: "/ok", Digest: "5D41402ABC4B2A76B9719D911017C592"}}, "", true},
		{"digest mismatch", []URL{{Path: "/ok", Digest: Digest([]byte("bye"))}}, "", false},
		{"redirect is not followed", []URL{{Path: "/redirect", StatusCode: 200}}, "", false},
		{"redirect expected", []URL{{Path: "/redirect", StatusCode: 302}}, "", true},
		{"all urls must pass", []URL{{Path: "/ok"}, {Path: "/missing"}}, "", false},
		{"virtualhost", []URL{{Path: "/host", Digest: Digest([]byte("www.example.com"))}}, "www.example.com", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New("rs", Config{HTTP: &HTTP{Timing: fast(), URLs: tt.urls, VirtualHost: tt.vhost}}, target, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Probe(t.Context())
			if (err == nil) != tt.ok {
				t.Fatalf("probe error = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestScriptProbe(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		dynamic bool
		timeout time.Duration
		ok      bool
		weight  int
		status  int // ExitError status, 0 if none expected
	}{
		{"exit 0", "exit 0", false, 0, true, NoWeight, 0},
		{"exit 1", "exit 1", false, 0, false, NoWeight, 1},
		{"exit 7 without misc_dynamic", "exit 7", false, 0, false, NoWeight, 7},
		{"exit 1 with misc_dynamic", "exit 1", true, 0, false, NoWeight, 1},
		{"exit 2 with misc_dynamic is weight 0", "exit 2", true, 0, true, 0, 0},
		{"exit 7 with misc_dynamic is weight 5", "exit 7", true, 0, true, 5, 0},
		{"exit 255 with misc_dynamic is weight 253", "exit 255", true, 0, true, 253, 0},
		{"timeout", "exec sleep 30", false, 100 * time.Millisecond, false, NoWeight, 0},
		{"arguments", `[ "$1" = up ]`, false, 0, true, NoWeight, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeScript(t, tt.body) + " up"
			c, err := New("rs", Config{Script: &Script{Timing: fast(), Path: path, Dynamic: tt.dynamic, Timeout: tt.timeout}}, netip.AddrPort{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			w, err := c.Probe(t.Context())
			if (err == nil) != tt.ok {
				t.Fatalf("probe error = %v, want ok=%v", err, tt.ok)
			}
			if w != tt.weight {
				t.Errorf("weight = %d, want %d", w, tt.weight)
			}
			var ee *ExitError
			if tt.status != 0 && (!errors.As(err, &ee) || ee.Status != tt.status) {
				t.Errorf("error = %v, want exit status %d", err, tt.status)
			}
			if tt.timeout > 0 && time.Since(start) > 10*time.Second {
				t.Errorf("timed-out script took %v", time.Since(start))
			}
		})
	}
}

// TestRunFlapping runs an HTTP_GET checker against a server whose answers follow a script and
// checks that rise/fall turn the flapping answers into exactly one down and one up.
func TestRunFlapping(t *testing.T) {
	codes := []int{200, 500, 200, 500, 500, 200, 500, 200, 200, 200}
	var n atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if i >= len(codes)-1 {
			once.Do(func() { close(done) })
		}
		if i >= len(codes) {
			i = len(codes) - 1
		}
		w.WriteHeader(codes[i])
	}))
	defer srv.Close()
	tm := fast()
	tm.Rise, tm.Fall = 2, 2
	c, err := New("rs1", Config{HTTP: &HTTP{Timing: tm, URLs: []URL{{Path: "/"}}}}, addrPort(t, srv.Listener.Addr().String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Initial().Up {
		t.Fatal("initial state is down without alpha")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := make(chan Status, 16)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx, out) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("server was not probed often enough before the deadline")
	}
	// Wait for the final up before stopping: the 9th answer (index 8) brings it up.
	var got []bool
	for len(got) < 2 {
		select {
		case s := <-out:
			if s.Name != "rs1" {
				t.Errorf("status name %q", s.Name)
			}
			got = append(got, s.Up)
		case <-ctx.Done():
			t.Fatalf("statuses so far %v, want [false true]", got)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	close(out)
	for s := range out {
		got = append(got, s.Up)
	}
	if len(got) != 2 || got[0] || !got[1] {
		t.Fatalf("statuses %v, want [false true] (down after 2 failures, up after 2 passes)", got)
	}
}

// TestRetry checks that a probe makes 1+retry attempts delay_before_retry apart, on a fake clock.
func TestRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var attempts int
		p := ProberFunc(func(context.Context) (int, error) { attempts++; return NoWeight, errors.New("refused") })
		c := NewWithProber("rs", "TEST", Timing{Retry: Retries(3), DelayBeforeRetry: 2 * time.Second}, p, nil)
		start := time.Now()
		if _, err := c.Probe(t.Context()); err == nil {
			t.Fatal("probe passed")
		}
		if attempts != 4 {
			t.Errorf("attempts = %d, want 4", attempts)
		}
		if d := time.Since(start); d != 6*time.Second {
			t.Errorf("probe took %v, want 6s", d)
		}
	})
}

// TestRunRiseFallAlpha steps a fake prober on a fake clock.
func TestRunRiseFallAlpha(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		results := []bool{false, true, true, true, false, true, false, false, false, true}
		weights := []int{NoWeight, NoWeight, 5, 5, NoWeight, NoWeight, NoWeight, NoWeight, NoWeight, NoWeight}
		i := 0
		exhausted := make(chan struct{})
		p := ProberFunc(func(ctx context.Context) (int, error) {
			if i == len(results) {
				close(exhausted)
			}
			if i >= len(results) {
				i++
				<-ctx.Done()
				return NoWeight, ctx.Err()
			}
			ok, w := results[i], weights[i]
			i++
			if ok {
				return w, nil
			}
			return NoWeight, errors.New("down")
		})
		c := NewWithProber("rs", "TEST", Timing{Interval: time.Second, Retry: Retries(0), Rise: 2, Fall: 3, Alpha: true}, p, nil)
		if c.Initial().Up {
			t.Fatal("alpha checker starts up")
		}
		ctx, cancel := context.WithCancel(t.Context())
		out := make(chan Status, 16)
		errc := make(chan error, 1)
		start := time.Now()
		go func() { errc <- c.Run(ctx, out) }()
		<-exhausted // on the fake clock, after len(results) intervals
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		close(out)
		var got []Status
		for s := range out {
			got = append(got, s)
		}
		// probes: F T T(up, w5) T F T F F F(down) T
		want := []Status{{Up: true, Weight: 5}, {Up: false, Weight: 5}}
		if d := time.Since(start); d != time.Duration(len(results))*time.Second {
			t.Errorf("%d probes took %v on the fake clock", len(results), d)
		}
		if len(got) != len(want) {
			t.Fatalf("statuses %+v, want %+v", got, want)
		}
		for k := range want {
			if got[k].Up != want[k].Up || got[k].Weight != want[k].Weight {
				t.Errorf("status %d = %+v, want %+v", k, got[k], want[k])
			}
		}
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error, "" for valid
	}{
		{"tcp", Config{TCP: &TCP{}}, ""},
		{"two checkers", Config{TCP: &TCP{}, Script: &Script{Path: "/bin/true"}}, "TCP_CHECK/HTTP_GET/MISC_CHECK: set only one checker"},
		{"http without url", Config{HTTP: &HTTP{}}, "HTTP_GET.url: at least one"},
		{"http relative path", Config{HTTP: &HTTP{URLs: []URL{{Path: "x"}}}}, "HTTP_GET.url[0].path"},
		{"http bad status", Config{HTTP: &HTTP{URLs: []URL{{Path: "/", StatusCode: 999}}}}, "HTTP_GET.url[0].status_code"},
		{"http bad digest", Config{HTTP: &HTTP{URLs: []URL{{Path: "/", Digest: "xyz"}}}}, "HTTP_GET.url[0].digest"},
		{"script without path", Config{Script: &Script{}}, "MISC_CHECK.misc_path"},
		{"negative delay_loop", Config{TCP: &TCP{Timing: Timing{Interval: -1}}}, "TCP_CHECK.delay_loop"},
		{"negative fall", Config{TCP: &TCP{Timing: Timing{Fall: -1}}}, "TCP_CHECK.fall"},
		{"negative retry", Config{TCP: &TCP{Timing: Timing{Retry: Retries(-1)}}}, "TCP_CHECK.retry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate("rs.")
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "rs."+tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
}
