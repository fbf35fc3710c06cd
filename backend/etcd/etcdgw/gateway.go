// Package etcdgw ends an etcd lease through etcd's HTTP/JSON gateway, with nothing but the standard
// library and zap: a fence guard can end a dead daemon's candidacy without carrying etcd's gRPC
// client. It speaks the few HTTP/1.1 requests it needs itself (post.go) rather than through
// net/http, which would add about 1 MB to the guard's binary, and so to its resident memory.
// backend/etcd's GatewayConfig and RevokeLease are this package's.
package etcdgw

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hacoord/hacoord/internal/retry"
)

// Config says how to reach etcd's HTTP/JSON gateway (the gRPC gateway every etcd member
// serves on its client URLs unless started with --enable-grpc-gateway=false). RevokeLease uses it so
// that a fence guard can end a dead daemon's lease without carrying a gRPC client.
type Config struct {
	// Endpoints are the client URLs, as in backend/etcd's Config.Endpoints: http:// or https:// URLs, or host:port
	// (https when TLS is set, http otherwise).
	Endpoints []string
	// TLS, if set, is used for https endpoints.
	TLS *tls.Config
	// Username and Password, if set, authenticate (POST /v3/auth/authenticate) before the revoke.
	Username, Password string
	// RequestTimeout bounds each request to one endpoint; 0 means 1s.
	RequestTimeout time.Duration
}

// RevokeLease revokes lease id through the gateway (POST /v3/lease/revoke): the lease's keys are
// deleted at once, so the election key of a dead master goes and the next candidate wins without
// waiting for the lease to expire. A lease that is not found (expired, revoked already) counts as
// revoked. It tries one endpoint after another, pausing between rounds, until one answers or ctx is
// done (then it returns the last error). log may be nil.
func RevokeLease(ctx context.Context, c Config, id int64, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	if len(c.Endpoints) == 0 {
		return errors.New("etcd: revoke through the gateway: no endpoints")
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = time.Second
	}
	g := &gateway{cfg: c}
	body := `{"ID":"` + strconv.FormatInt(id, 10) + `"}`
	return retry.Servers(ctx, c.Endpoints, func(ep string) (bool, error) {
		err := g.post(ctx, ep, "/v3/lease/revoke", body, nil)
		var ge *gatewayError
		if errors.As(err, &ge) && ge.Code == codeNotFound {
			log.Debug("lease not found: gone already", zap.String("endpoint", ep))
			return true, nil
		}
		if err == nil {
			return true, nil
		}
		log.Debug("revoke through the gateway failed", zap.String("endpoint", ep), zap.Error(err))
		return false, fmt.Errorf("etcd: revoke lease %x through %s: %w", id, ep, err)
	})
}

// gateway is one RevokeLease's configuration and auth token.
type gateway struct {
	cfg   Config
	token string // from the last authenticate
}

// codeNotFound is gRPC's NotFound, as the gateway reports a missing lease.
const codeNotFound = 5

// gatewayError is the gateway's JSON error answer.
type gatewayError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"-"`
}

func (e *gatewayError) Error() string {
	return fmt.Sprintf("%s: %s (code %d)", e.Status, e.Message, e.Code)
}

// url returns the gateway URL of path on endpoint ep.
func (g *gateway) url(ep, path string) (string, error) {
	switch {
	case strings.HasPrefix(ep, "http://"), strings.HasPrefix(ep, "https://"):
		return strings.TrimSuffix(ep, "/") + path, nil
	case strings.Contains(ep, "://"):
		return "", fmt.Errorf("endpoint %q: only http://, https:// and host:port reach the gateway", ep)
	case g.cfg.TLS != nil:
		return "https://" + ep + path, nil
	}
	return "http://" + ep + path, nil
}

// post sends body to path on ep, authenticating first when a user is configured, and decodes the
// answer into out (nil: discarded).
func (g *gateway) post(ctx context.Context, ep, path, body string, out any) error {
	if g.cfg.Username != "" && g.token == "" && path != authPath {
		var a struct {
			Token string `json:"token"`
		}
		cred, _ := json.Marshal(map[string]string{"name": g.cfg.Username, "password": g.cfg.Password})
		if err := g.post(ctx, ep, authPath, string(cred), &a); err != nil {
			return fmt.Errorf("authenticate as %q: %w", g.cfg.Username, err)
		}
		g.token = a.Token
	}
	u, err := g.url(ep, path)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	var auth string
	if path != authPath {
		auth = g.token
	}
	resp, err := postJSON(rctx, u, g.cfg.TLS, auth, body)
	if err != nil {
		return err
	}
	b := resp.body
	if resp.code != 200 {
		ge := &gatewayError{Status: resp.status}
		if json.Unmarshal(b, ge) != nil || ge.Message == "" {
			ge.Message = string(bytes.TrimSpace(b))
		}
		if ge.Code == codeUnauthenticated {
			g.token = "" // expired: authenticate again next time
		}
		return ge
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("answer %q: %w", b, err)
		}
	}
	return nil
}

const (
	authPath            = "/v3/auth/authenticate"
	codeUnauthenticated = 16
)
