package guardproc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/internal/etcdtest"
)

// The guard ends a candidacy in an etcd that serves clients over TLS with authentication: its own
// TLS setup (ClientTLS: the CA file verifies the server) and etcdgw's HTTP/1.1 over TLS
// authenticate and revoke the lease, and its key goes; with a wrong password, or without the CA,
// the key stays. (Client certificates are not tested end to end: the embedded etcd's gateway
// would need a server certificate that is also a client one.)
func TestEndCandidacyEtcdTLS(t *testing.T) {
	pki := etcdtest.NewPKI(t)
	caOnly, err := ClientTLS(pki.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv, cli, lease := tlsServerWithLease(t, pki, caOnly, "s3cret")
	for _, c := range []Candidacy{
		{CACert: pki.CA, User: "root", Password: "wrong"},
		{CACert: pki.OtherCA, User: "root", Password: "s3cret"},
	} {
		if err := EndCandidacy(context.Background(), candidacyText(t, srv, lease, c), zaptest.NewLogger(t)); err == nil {
			t.Fatalf("EndCandidacy with CA %s, password %s succeeded", c.CACert, c.Password)
		} else {
			t.Logf("CA %s, password %s: %v", c.CACert, c.Password, err)
		}
		if !keyThere(t, cli) {
			t.Fatal("the key went")
		}
	}
	right := candidacyText(t, srv, lease, Candidacy{CACert: pki.CA, User: "root", Password: "s3cret"})
	if err := EndCandidacy(context.Background(), right, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if keyThere(t, cli) {
		t.Fatal("the lease's key is still there after EndCandidacy")
	}
}

// tlsServerWithLease starts etcd over TLS (no client certificates) with root's password when not
// empty, and puts key guard/k under a new lease through a client with tc.
func tlsServerWithLease(t *testing.T, pki etcdtest.PKI, tc *tls.Config, password string) (*etcdtest.Server, *clientv3.Client, clientv3.LeaseID) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// A fixed port: the embedded server's gateway dials its own client URL.
	srv := etcdtest.Start(t, func(o *etcdtest.Options) {
		o.ClientURL = "https://" + addr
		o.ClientTLS = transport.TLSInfo{CertFile: pki.ServerCert, KeyFile: pki.ServerKey}
	})
	cc := clientv3.Config{Endpoints: srv.URLs(), TLS: tc, DialTimeout: 5 * time.Second}
	if password != "" {
		srv.EnableAuth(t, clientv3.Config{TLS: tc}, password)
		cc.Username, cc.Password = "root", password
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "guard/k", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	return srv, cli, g.ID
}

func keyThere(t *testing.T, cli *clientv3.Client) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "guard/k")
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) == 1
}

// candidacyText is c for the etcd lease on srv, as a candidacy line's JSON.
func candidacyText(t *testing.T, srv *etcdtest.Server, lease clientv3.LeaseID, c Candidacy) string {
	t.Helper()
	c.Store, c.Endpoints, c.Within, c.Lease = StoreEtcd, srv.URLs(), 500*time.Millisecond, strconv.FormatUint(uint64(lease), 16)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ClientTLS wants both halves of the client certificate, and a CA file with a certificate.
func TestClientTLSFiles(t *testing.T) {
	pki := etcdtest.NewPKI(t)
	if _, err := ClientTLS("", pki.ClientCert, ""); err == nil {
		t.Error("a certificate without its key was taken")
	}
	if _, err := ClientTLS(pki.ClientKey, "", ""); err == nil {
		t.Error("a key file was taken as the CA")
	}
	tc, err := ClientTLS(pki.CA, "", "")
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 0 {
		t.Errorf("CA only: %+v, %v; want the CA's pool and no certificate", tc, err)
	}
	tc, err = ClientTLS(pki.CA, pki.ClientCert, pki.ClientKey)
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("CA and certificate: %+v, %v; want the CA's pool, the certificate, TLS 1.2 at least", tc, err)
	}
}
