package etcd_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// runUntil runs an Elector for cfg until it reports Master (nil) or Run returns (its error),
// within timeout.
func runUntil(t *testing.T, cfg etcd.Config, timeout time.Duration) (election.State, error, time.Duration) {
	t.Helper()
	el, err := etcd.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := election.NewOutbox()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- el.Run(ctx, out) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10s after its context was cancelled")
		}
	}()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last election.State
	for {
		select {
		case <-out.Ready():
			out.TakeAll(func(s election.State) { last = s })
			if last.Role == election.Master {
				return last, nil, time.Since(start)
			}
		case err := <-done:
			done <- err // for the deferred wait
			return last, err, time.Since(start)
		case <-deadline.C:
			t.Fatalf("neither master nor an error within %v; last state %+v", timeout, last)
		}
	}
}

func tlsConfig(t *testing.T, ca, cert, key string) *tls.Config {
	t.Helper()
	tc, err := transport.TLSInfo{TrustedCAFile: ca, CertFile: cert, KeyFile: key}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// With client TLS (and client certificates required) and with authentication enabled, the
// Elector becomes master with the right CA, certificate and password. With a CA that did not sign
// the server's certificate, a client certificate the server does not trust, or a wrong password,
// Run returns at once (no retry loop) an error that says so and is etcd.ErrCredentials.
func TestTLSAndAuth(t *testing.T) {
	pki := etcdtest.NewPKI(t)
	srv := etcdtest.Start(t, etcdtest.WithClientTLS(pki, true))
	good := tlsConfig(t, pki.CA, pki.ClientCert, pki.ClientKey)
	srv.EnableAuth(t, clientv3.Config{TLS: good}, "s3cret")
	cfg := func(name string, tc *tls.Config, password string) etcd.Config {
		c := testConfig(srv.URLs()[0], "secure", name)
		c.TLS, c.Username, c.Password = tc, "root", password
		return c
	}

	st, err, took := runUntil(t, cfg("n1", good, "s3cret"), 15*time.Second)
	if err != nil || st.Role != election.Master {
		t.Fatalf("with the right CA, certificate and password: state %+v, err %v", st, err)
	}
	t.Logf("master over TLS with auth after %v", took.Round(time.Millisecond))

	for _, c := range []struct {
		name string
		cfg  etcd.Config
		want string
	}{
		{"wrong password", cfg("n2", good, "wrong"), "authentication failed"},
		{"wrong CA", cfg("n3", tlsConfig(t, pki.OtherCA, pki.ClientCert, pki.ClientKey), "s3cret"), "certificate"},
		{"untrusted client certificate", cfg("n4", tlsConfig(t, pki.CA, pki.OtherCert, pki.OtherKey), "s3cret"), "certificate"},
		{"no client certificate", cfg("n5", tlsConfig(t, pki.CA, "", ""), "s3cret"), "certificate"},
		// No password: the client does not authenticate at dial, the first request meets the TLS error.
		{"wrong CA, no password", cfg("n6", tlsConfig(t, pki.OtherCA, pki.ClientCert, pki.ClientKey), ""), "certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err, took := runUntil(t, c.cfg, 15*time.Second)
			if err == nil || !errors.Is(err, etcd.ErrCredentials) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run = %v, want an etcd.ErrCredentials saying %q", err, c.want)
			}
			if took > 3*time.Second {
				t.Errorf("the error took %v: a retry loop", took)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong\"") {
				t.Errorf("the error shows the password: %v", err)
			}
			t.Logf("%v after %v", err, took.Round(time.Millisecond))
		})
	}
}

// An Elector with credentials started before etcd is up does not give up: it reports Fault and
// becomes master once etcd (with authentication) answers; the client authenticates then.
func TestAuthBeforeEtcdIsUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := testConfig("http://"+addr, "late", "n1")
	cfg.Username, cfg.Password = "root", "s3cret"
	el, err := etcd.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := electiontest.Start(t, "n1", candidate(el))
	r.Wait(t, 20*time.Second, "Fault while etcd is down", lastIs(election.Fault))
	srv := etcdtest.Start(t, func(o *etcdtest.Options) { o.ClientURL = "http://" + addr })
	srv.EnableAuth(t, clientv3.Config{}, "s3cret")
	r.Wait(t, 20*time.Second, "Master once etcd is up", lastIs(election.Master))
}
