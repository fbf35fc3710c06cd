package etcdtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PKI is a throw-away certificate authority with the PEM files a TLS test needs: a server
// certificate for 127.0.0.1 and localhost, a client certificate, and a second, unrelated CA with
// a client certificate of its own (the wrong certificate).
type PKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	// OtherCA signed OtherCert/OtherKey; the server does not trust it, and it did not sign the
	// server's certificate.
	OtherCA, OtherCert, OtherKey string
}

// NewPKI writes a PKI into a t.TempDir.
func NewPKI(t testing.TB) PKI {
	t.Helper()
	dir := t.TempDir()
	p := PKI{}
	ca, caKey := newCA(t, dir, "ca", &p.CA)
	p.ServerCert, p.ServerKey = leaf(t, dir, "server", ca, caKey, x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = leaf(t, dir, "client", ca, caKey, x509.ExtKeyUsageClientAuth)
	other, otherKey := newCA(t, dir, "other-ca", &p.OtherCA)
	p.OtherCert, p.OtherKey = leaf(t, dir, "other-client", other, otherKey, x509.ExtKeyUsageClientAuth)
	return p
}

// WithClientTLS serves clients over TLS with the PKI's server certificate; with clientCerts, a
// client must present a certificate the PKI's CA signed.
func WithClientTLS(p PKI, clientCerts bool) Option {
	return func(o *Options) {
		o.ClientURL = "https://127.0.0.1:0"
		o.ClientTLS = transport.TLSInfo{CertFile: p.ServerCert, KeyFile: p.ServerKey, TrustedCAFile: p.CA,
			ClientCertAuth: clientCerts}
	}
}

// EnableAuth turns on etcd's authentication with user root (role root) and password, through a
// client configured by cc (its Endpoints are filled in). After it, every request needs the
// credentials.
func (s *Server) EnableAuth(t testing.TB, cc clientv3.Config, password string) {
	t.Helper()
	cc.Endpoints = s.URLs()
	cc.DialTimeout = 5 * time.Second
	cli, err := clientv3.New(cc)
	if err != nil {
		t.Fatalf("etcdtest: enable auth: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.UserAdd(ctx, "root", password); err != nil {
		t.Fatalf("etcdtest: add user root: %v", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatalf("etcdtest: grant role root: %v", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatalf("etcdtest: enable auth: %v", err)
	}
}

// URLs returns the client URLs, with their scheme (https:// when serving TLS).
func (s *Server) URLs() []string {
	var out []string
	for _, u := range s.e.Config().ListenClientUrls {
		scheme := u.Scheme
		if scheme == "" {
			scheme = "http"
		}
		for _, ep := range s.endpoints {
			out = append(out, scheme+"://"+ep)
		}
		break
	}
	return out
}

func newCA(t testing.TB, dir, name string, certPath *string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: "etcdtest " + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	*certPath = writePEM(t, dir, name+".pem", "CERTIFICATE", der)
	return cert, key
}

func leaf(t testing.TB, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kb)
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
