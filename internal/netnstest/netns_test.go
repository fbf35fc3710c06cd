package netnstest

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hacoord/hacoord/internal/testenv"
)

func TestVethAcrossNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := New(t, "a"), New(t, "b")
	if _, _, err := Veth(a, "eth0", netip.MustParsePrefix("192.0.2.1/24"), b, "eth0", netip.MustParsePrefix("192.0.2.2/24")); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", "192.0.2.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	err := a.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("dial across veth: %v", err)
	}
}
