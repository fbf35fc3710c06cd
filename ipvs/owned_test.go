package ipvs

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	cipvs "github.com/cloudflare/ipvs"
	"go.uber.org/zap/zaptest"

	"github.com/hacoord/hacoord/ipvs/ipvstest"
)

// foreignAndAdopted puts in fake a service no configuration names (with a real server) and one
// that tableConfig names (with the real server 10.0.0.11), as a previous run or an operator would.
func foreignAndAdopted(t *testing.T, fake *ipvstest.Fake) {
	t.Helper()
	mask := hostMask(INET)
	foreign := cipvs.Service{Address: netip.MustParseAddr("10.0.0.200"), Port: 80, Protocol: cipvs.TCP, Family: cipvs.INET, Netmask: mask, Scheduler: "rr"}
	adopted := cipvs.Service{Address: netip.MustParseAddr("10.0.0.100"), Port: 80, Protocol: cipvs.TCP, Family: cipvs.INET, Netmask: mask, Scheduler: "rr"}
	must(t,
		fake.CreateService(foreign),
		fake.CreateDestination(foreign, cipvs.Destination{Address: netip.MustParseAddr("10.0.0.50"), Port: 80, Family: cipvs.INET, Weight: 1}),
		fake.CreateService(adopted),
		fake.CreateDestination(adopted, cipvs.Destination{Address: netip.MustParseAddr("10.0.0.11"), Port: 80, Family: cipvs.INET, FwdMethod: cipvs.DirectRoute, Weight: 1}),
	)
}

// What a Reconciler owns goes to the fence guard as words and back: the services it created, and
// the real servers it added to a service it adopted; WithdrawOwned then removes exactly that,
// leaving the adopted service (with the real server it had) and the foreign one.
func TestOwnedWordsAndWithdrawOwned(t *testing.T) {
	fake := ipvstest.NewFake()
	foreignAndAdopted(t, fake)
	changes := 0
	r, err := New(tableConfig(), zaptest.NewLogger(t), WithClient(fake), WithOwnedChange(func() { changes++ }))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	if changes != 1 {
		t.Fatalf("%d ownership changes reported for one Promote, want 1", changes)
	}
	o := r.Owned()
	words := o.Words()
	want := []string{"UDP/10.0.0.100:53", "TCP/[2001:db8::100]:443", "FWM/7/IPv4", "TCP/10.0.0.100:80>10.0.0.12:80"}
	if !slices.Equal(words, want) {
		t.Fatalf("words %q, want %q", words, want)
	}
	back, err := ParseOwned(words)
	if err != nil || !slices.Equal(back.Services, o.Services) || !slices.Equal(back.Destinations, o.Destinations) {
		t.Fatalf("ParseOwned(%q) = %+v, %v; want %+v", words, back, err, o)
	}
	for _, bad := range []string{"TCP10.0.0.1:80", "XYZ/10.0.0.1:80", "FWM/0/IPv4", "FWM/1/IPv5", "TCP/10.0.0.1:80>nowhere"} {
		if _, err := ParseOwned([]string{bad}); err == nil {
			t.Errorf("ParseOwned(%q) accepted", bad)
		}
	}
	removed, err := WithdrawOwned(fake, back)
	if err != nil || !removed {
		t.Fatalf("WithdrawOwned = %v, %v", removed, err)
	}
	got := readFormat(t, fake)
	wantTable := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.100:80 wrr persistent 300
  -> 10.0.0.11:80                 Route   1      0          0         
TCP  10.0.0.200:80 rr
  -> 10.0.0.50:80                 Masq    1      0          0         
`
	if got != wantTable {
		t.Fatalf("after WithdrawOwned:\n%s\nwant:\n%s", got, wantTable)
	}
	// Again: all gone already, no error.
	if removed, err := WithdrawOwned(fake, back); err != nil || removed {
		t.Fatalf("second WithdrawOwned = %v, %v", removed, err)
	}
	if err := r.Withdraw(t.Context()); err != nil || !r.Owned().IsZero() || changes != 2 {
		t.Fatalf("Withdraw: %v, owned %+v, %d changes", err, r.Owned(), changes)
	}
}

// A restarted daemon with program_on_backup false withdraws its own virtual servers' services that
// an earlier run left, and nothing else.
func TestCleanupWithdrawsLeftoversOnBackup(t *testing.T) {
	fake := ipvstest.NewFake()
	foreignAndAdopted(t, fake)
	cfg := tableConfig()
	cfg.ProgramOnBackup = false
	r, err := New(cfg, zaptest.NewLogger(t), WithClient(fake))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := readFormat(t, fake)
	if strings.Contains(got, "10.0.0.100:80") || !strings.Contains(got, "TCP  10.0.0.200:80 rr\n  -> 10.0.0.50:80") {
		t.Fatalf("after Cleanup:\n%s\nwant the leftover 10.0.0.100:80 gone and the foreign service kept", got)
	}
}

// With program_on_backup true, the leftover is taken over: programmed once (updated, not
// duplicated), and withdrawn with the rest when the daemon stops.
func TestCleanupTakesOverLeftoversWithProgramOnBackup(t *testing.T) {
	fake := ipvstest.NewFake()
	foreignAndAdopted(t, fake)
	cfg := tableConfig()
	cfg.ProgramOnBackup = true
	r, err := New(cfg, zaptest.NewLogger(t), WithClient(fake))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := readFormat(t, fake)
	if strings.Count(got, "10.0.0.100:80 ") != 1 || !strings.Contains(got, "TCP  10.0.0.100:80 wrr persistent 300\n  -> 10.0.0.11:80                 Route   1      0          0         \n  -> 10.0.0.12:80") {
		t.Fatalf("after Cleanup and Promote:\n%s\nwant the leftover reconciled to the configuration", got)
	}
	if err := r.Withdraw(t.Context()); err != nil {
		t.Fatal(err)
	}
	got = readFormat(t, fake)
	if strings.Contains(got, "10.0.0.100") || !strings.Contains(got, "TCP  10.0.0.200:80 rr") {
		t.Fatalf("after Withdraw:\n%s\nwant only the foreign service", got)
	}
}
