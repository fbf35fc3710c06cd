package etcdgw

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// RevokeLease through a gateway that answers in chunks (a flushed answer has no Content-Length):
// the token of the first authenticate goes with the revoke; an expired token (code 16) makes the
// next round authenticate again; a lease not found counts as revoked.
func TestRevokeLeaseChunkedAnswersAndReauth(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	tokens, expireOnce := 0, true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body))
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case authPath:
			tokens++
			fmt.Fprintf(w, `{"header":{},`)
			w.(http.Flusher).Flush() // chunked from here
			fmt.Fprintf(w, `"token":"tok%d"}`, tokens)
		case "/v3/lease/revoke":
			if expireOnce {
				expireOnce = false
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"code":16,"message":"etcdserver: invalid auth token"}`)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"code":5,`)
			w.(http.Flusher).Flush()
			fmt.Fprint(w, `"message":"etcdserver: requested lease not found"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := RevokeLease(ctx, Config{Endpoints: []string{srv.URL}, Username: "root", Password: "pw"}, 42, nil)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		`POST /v3/auth/authenticate  {"name":"root","password":"pw"}`,
		`POST /v3/lease/revoke tok1 {"ID":"42"}`,
		`POST /v3/auth/authenticate  {"name":"root","password":"pw"}`,
		`POST /v3/lease/revoke tok2 {"ID":"42"}`,
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// A gateway that accepts and never answers costs RequestTimeout per try, and RevokeLease gives up
// when its context ends; an error answer that is not JSON is reported with its status.
func TestRevokeLeaseSilentAndGarbledGateways(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = RevokeLease(ctx, Config{Endpoints: []string{l.Addr().String()}, RequestTimeout: 100 * time.Millisecond}, 1, nil)
	if took := time.Since(start); err == nil || took > 2*time.Second {
		t.Fatalf("silent gateway: %v after %v, want an error within the context's 300ms", err, took)
	}
	t.Logf("silent gateway: %v", err)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "upstream down\n")
	}))
	defer srv.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	err = RevokeLease(ctx2, Config{Endpoints: []string{srv.URL}}, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "502 Bad Gateway: upstream down") {
		t.Fatalf("garbled gateway: %v, want the status and the text", err)
	}
}
