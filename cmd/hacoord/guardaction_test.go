package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
	"github.com/hacoord/hacoord/ipvs/ipvstest"
)

// The promote chain tells the daemon's fence guard, in order: the hold (before anything is
// programmed), the IPVS services once they are in the kernel (before the VIPs are bound), and on
// demote what is left of them, then the release. A guard process that records what it reads
// stands in for the real one.
func TestGuardHearsTheHoldTheIPVSServicesAndTheRelease(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lines")
	sup, err := fencing.StartSupervisor([]string{"sh", "-c", `echo ready; while read l; do echo "$l" >> "$0"; done`, file}, os.Stderr, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &guard{s: sup}
	cfg := ipvs.DefaultConfig()
	cfg.ProgramOnBackup = false
	cfg.VirtualServers = []ipvs.VirtualServer{{Address: netip.MustParseAddr("10.0.0.100"), Port: 80, LBAlgo: "rr",
		RealServers: []ipvs.RealServer{{Address: netip.MustParseAddr("10.0.0.11")}}}}
	rep := newIPVSReporter(g, "web", zaptest.NewLogger(t))
	r, err := ipvs.New(cfg, zaptest.NewLogger(t), ipvs.WithClient(ipvstest.NewFake()), ipvs.WithOwnedChange(rep.poke))
	if err != nil {
		t.Fatal(err)
	}
	rep.r = r
	acts := (&hooks{}).actions(guardAction{g: g, inst: "web", log: zaptest.NewLogger(t)}, ipvsAction{r: r, report: rep}, nil)
	st := election.State{Role: election.Master, Term: 1, ValidUntil: time.Now().Add(time.Hour)}
	for _, a := range acts {
		if err := a.Promote(t.Context(), st); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range slices.Backward(acts) {
		if err := a.Demote(t.Context(), st); err != nil {
			t.Fatal(err)
		}
	}
	g.Close()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`(?m)^hold web [0-9]+$`).ReplaceAllString(strings.TrimSpace(string(b)), "hold web T")
	want := "hold web T\nipvs web TCP/10.0.0.100:80\nipvs web\nrelease web"
	if got != want {
		t.Fatalf("the guard read\n%s\nwant\n%s", got, want)
	}
}
