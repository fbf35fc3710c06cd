package ipvs

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

// A reload while active adds the new service and removes the one dropped, leaving the one kept;
// one that changes program_on_backup is refused and changes nothing.
func TestSetConfigReprogramsTable(t *testing.T) {
	r, fake := newFakeReconciler(t, tableConfig())
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := tableConfig()
	cfg.VirtualServers = append(cfg.VirtualServers[:1], VirtualServer{
		Address: netip.MustParseAddr("10.0.0.100"), Port: 8443, LBAlgo: "rr",
		RealServers: []RealServer{{Address: netip.MustParseAddr("10.0.0.51")}},
	})
	fake.ResetCalls()
	if err := r.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	got := readFormat(t, fake)
	for _, want := range []string{"TCP  10.0.0.100:80 wrr", "TCP  10.0.0.100:8443 rr", "10.0.0.51:8443"} {
		if !strings.Contains(got, want) {
			t.Fatalf("table after SetConfig lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"UDP  10.0.0.100:53", "FWM  7", "2001:db8::100"} {
		if strings.Contains(got, gone) {
			t.Fatalf("table after SetConfig still has %q:\n%s", gone, got)
		}
	}
	for _, c := range fake.Calls() {
		if strings.Contains(c.String(), "10.0.0.100:80") && !strings.HasPrefix(c.Method, "Get") {
			t.Errorf("the kept service was touched: %s", c)
		}
	}
	if st := r.Status(); len(st.Services) != 2 || st.Services[1].Service != "TCP 10.0.0.100:8443" && !strings.Contains(st.Services[1].Service, "8443") {
		t.Errorf("status after SetConfig %+v", st.Services)
	}
	bad := cfg
	bad.ProgramOnBackup = !cfg.ProgramOnBackup
	if err := r.SetConfig(bad); err == nil || !strings.Contains(err.Error(), "program_on_backup") {
		t.Fatalf("SetConfig(program_on_backup changed) = %v, want an error naming it", err)
	}
	if got2 := readFormat(t, fake); got2 != got {
		t.Fatalf("a refused SetConfig changed the table:\n%s", got2)
	}
}

// While Run runs, SetConfig restarts the checkers on the new configuration: a real server added
// with a check that fails is taken out once its checker has run.
func TestSetConfigRestartsCheckers(t *testing.T) {
	ln, rs := listenRS(t)
	cfg := natConfig(rs, RealServer{Address: rs.Addr(), Check: fastTCP})
	fr := runFake(t, cfg)
	r, fake, has, waitFor := fr.r, fr.fake, fr.has, fr.waitFor
	waitFor("the table", func() bool { return has(rs.String()) })
	// 127.0.0.1 port 1: nothing listens; no check: 127.0.0.3 stays.
	dead := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 1)
	next := cfg
	next.VirtualServers = []VirtualServer{cfg.VirtualServers[0]}
	next.VirtualServers[0].RealServers = []RealServer{
		{Address: rs.Addr(), Check: fastTCP},
		{Address: dead.Addr(), Port: dead.Port(), Check: fastTCP},
		{Address: netip.MustParseAddr("127.0.0.3")},
	}
	if err := r.SetConfig(next); err != nil {
		t.Fatal(err)
	}
	waitFor("the new real server without a check", func() bool { return has("127.0.0.3:") })
	if !has(rs.String()) {
		t.Fatalf("the kept real server (up) left the table on reload:\n%s", readFormat(t, fake))
	}
	waitFor("the new real server's removal by its failing check", func() bool { return !has(dead.String()) })
	ln.Close()
	waitFor("the kept real server's removal by its restarted checker", func() bool { return !has(rs.String()) })
	fr.end()
}

// A real server that is down when a reload keeps it comes back once it answers: its restarted
// checker starts down too, so it reports the recovery.
func TestSetConfigKeptDownServerRecovers(t *testing.T) {
	ln, rs := listenRS(t)
	ln.Close() // down from the start
	cfg := natConfig(rs, RealServer{Address: rs.Addr(), Check: fastTCP}, RealServer{Address: netip.MustParseAddr("127.0.0.3")})
	fr := runFake(t, cfg)
	r, fake, has, waitFor := fr.r, fr.fake, fr.has, fr.waitFor
	waitFor("the table without the dead real server", func() bool { return has("127.0.0.3:") && !has(rs.String()) })
	next := cfg
	next.VirtualServers = append([]VirtualServer{}, cfg.VirtualServers...)
	next.VirtualServers[0].RealServers = append([]RealServer{}, cfg.VirtualServers[0].RealServers...)
	next.VirtualServers[0].RealServers[1].Address = netip.MustParseAddr("127.0.0.4")
	if err := r.SetConfig(next); err != nil {
		t.Fatal(err)
	}
	waitFor("the reloaded table", func() bool { return has("127.0.0.4:") })
	if has(rs.String()) {
		t.Fatalf("the kept real server, down, came back on reload:\n%s", readFormat(t, fake))
	}
	ln, err := net.Listen("tcp", rs.String())
	if err != nil {
		t.Fatalf("listening on the real server's port %d again: %v", rs.Port(), err)
	}
	defer ln.Close()
	waitFor("the kept real server back once it answers", func() bool { return has(rs.String()) })
	fr.end()
}
