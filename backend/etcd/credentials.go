package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

// ErrCredentials marks an error that retrying cannot cure because the store refused who we are,
// or we refused the store: a wrong user or password, a user without permission, a server
// certificate our CA did not sign (or for another name), a client certificate the server does not
// trust or did not get. Run returns it at once instead of reporting Fault and retrying; the
// daemon exits with a configuration error naming the settings.
var ErrCredentials = errors.New("etcd: credentials refused")

// credentialsError returns err marked with ErrCredentials when it is such a refusal, else nil.
// gRPC reports a failed TLS handshake as Unavailable, with the TLS error only in the text.
func credentialsError(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("%w: authentication failed: wrong user or password (%v)", ErrCredentials, err)
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	for _, s := range []string{"authentication handshake failed", "x509: ", "remote error: tls: ", "tls: failed to verify"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w: TLS: certificate refused: %s", ErrCredentials, msg)
		}
	}
	return nil
}

// probeTLS shakes hands with each endpoint as the client would (cfg.TLS), to name a certificate
// problem that the client only reports as a timeout (clientv3.New authenticating over a
// connection whose handshake keeps failing). It returns an ErrCredentials error for a handshake
// refused by either side, nil otherwise (also when an endpoint does not answer at all). With TLS
// 1.3 a server refuses the client's certificate after the handshake: a short read hears it.
func probeTLS(ctx context.Context, cfg Config) error {
	if cfg.TLS == nil {
		return nil
	}
	for _, ep := range cfg.Endpoints {
		host := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			host = u.Host
		}
		d := tls.Dialer{Config: cfg.TLS.Clone(), NetDialer: &net.Dialer{Timeout: cfg.DialTimeout}}
		if d.Config.ServerName == "" {
			if h, _, err := net.SplitHostPort(host); err == nil {
				d.Config.ServerName = h
			}
		}
		d.Config.NextProtos = []string{"h2"}
		pctx, cancel := context.WithTimeout(ctx, max(cfg.DialTimeout, time.Second))
		c, err := d.DialContext(pctx, "tcp", host)
		cancel()
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if cerr := tlsRefusal(err); cerr != nil {
			return fmt.Errorf("%w: TLS with %s: %v", ErrCredentials, host, cerr)
		}
	}
	return nil
}

// tlsRefusal returns err if it is a certificate refused by us or by the server.
func tlsRefusal(err error) error {
	if err == nil {
		return nil
	}
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		ve  *tls.CertificateVerificationError
		ae  tls.AlertError
		msg = err.Error()
	)
	if errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &ve) || errors.As(err, &ae) ||
		strings.Contains(msg, "remote error: tls: ") {
		return err
	}
	return nil
}

// lazyAuth returns a client for cc that authenticates with cc's user and password on its first
// answered request instead of in clientv3.New (which fails when the store does not answer at
// once, a daemon started before etcd): it is opened with a placeholder token, which contacts
// nothing, and then given the credentials; the store refuses the placeholder
// (ErrInvalidAuthToken) and clientv3 then fetches a real token with them, as it does when a token
// expires. A wrong password then fails that request with ErrAuthFailed (credentialsError).
func lazyAuth(cc clientv3.Config) (*clientv3.Client, error) {
	user, password := cc.Username, cc.Password
	cc.Username, cc.Password, cc.Token = "", "", "hacoord-not-authenticated-yet"
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, err
	}
	cli.Token, cli.Username, cli.Password = "", user, password
	return cli, nil
}
