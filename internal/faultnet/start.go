package faultnet

import "testing"

// Start is New for a test: a failure to listen fails it, and the proxy is closed when it ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
