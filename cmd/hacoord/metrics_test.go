package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
)

// scriptElector reports the States sent on its channel.
type scriptElector struct{ states chan election.State }

func (e *scriptElector) Run(ctx context.Context, out *election.Outbox) error {
	for {
		select {
		case s := <-e.states:
			out.Set(s)
		case <-ctx.Done():
			out.Set(election.State{Role: election.Backup, Reason: "shutdown"})
			return nil
		}
	}
}

// scrape gathers reg into "name{label="v",...}" -> value (a histogram's _count and _sum), the
// labels sorted by name.
func scrape(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(ls)
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count{"+strings.Join(ls, ",")+"}"] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum{"+strings.Join(ls, ",")+"}"] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// testInstance is an instance of group web with a Coordinator over a scripted Elector, a Gate with
// one check, and the metrics watching it; changes receives every Coordinator Status.
func testInstance(t *testing.T) (*instance, *scriptElector, *metrics, chan election.Status) {
	t.Helper()
	el := &scriptElector{states: make(chan election.State)}
	co, err := election.NewCoordinator(el, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	gate, err := election.NewGate(el, 100, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{plan: &instancePlan{name: "web", group: "web", backend: backendEtcd}, co: co, gate: gate}
	m := newMetrics(nil)
	in.alarms = newAlarms(zap.NewNop())
	m.watch([]*instance{in})
	changes := make(chan election.Status, 64)
	co.OnChange(func(s election.Status) { changes <- s })
	return in, el, m, changes
}

// waitStatus waits up to 5s for a Status that ok accepts.
func waitStatus(t *testing.T, changes <-chan election.Status, what string, ok func(election.Status) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-changes:
			if ok(s) {
				return
			}
		case <-deadline:
			t.Fatalf("no Status with %s within 5s", what)
		}
	}
}

const web = `group="web",instance="web"`

// TestMetricsFamilies: the families follow the Coordinator through a takeover, a step-down and a
// self-fence, as a scrape would show them.
func TestMetricsFamilies(t *testing.T) {
	in, el, m, changes := testInstance(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.co.Run(ctx) }()
	defer func() { cancel(); <-done }()

	got := scrape(t, m.reg)
	for key, want := range map[string]float64{
		"hacoord_master{" + web + "}":                              0,
		`hacoord_role{` + web + `,role="init"}`:                    1,
		`hacoord_role{` + web + `,role="master"}`:                  0,
		"hacoord_takeover_seconds_count{" + web + "}":              0,
		"hacoord_self_fence_total{" + web + "}":                    0,
		`hacoord_split_brain_alarms_total{` + web + `,kind="arp"}`: 0,
		"hacoord_garp_sent_total{" + web + "}":                     0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("before any State: %s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	if n := countPrefix(got, "hacoord_build_info{"); n != 1 {
		t.Errorf("%d hacoord_build_info series, want 1", n)
	}

	el.states <- election.State{Role: election.Master, Term: 7, ValidUntil: time.Now().Add(time.Minute), Reason: "elected"}
	waitStatus(t, changes, "promoted", func(s election.Status) bool { return s.Promoted })
	got = scrape(t, m.reg)
	for key, want := range map[string]float64{
		"hacoord_master{" + web + "}":                        1,
		`hacoord_role{` + web + `,role="master"}`:            1,
		`hacoord_role{` + web + `,role="init"}`:              0,
		"hacoord_term{" + web + "}":                          7,
		`hacoord_transitions_total{` + web + `,to="master"}`: 1,
		"hacoord_takeover_seconds_count{" + web + "}":        1,
	} {
		if v := got[key]; v != want {
			t.Errorf("master: %s = %v, want %v", key, v, want)
		}
	}
	if left := got["hacoord_lease_remaining_seconds{"+web+"}"]; left <= 50 || left > 60 {
		t.Errorf("master: lease remaining %vs, want just under 60s", left)
	}

	el.states <- election.State{Role: election.Backup, Term: 8, Reason: "resigned"}
	waitStatus(t, changes, "backup", func(s election.Status) bool { return !s.Promoted && s.State.Role == election.Backup })
	got = scrape(t, m.reg)
	for key, want := range map[string]float64{
		"hacoord_master{" + web + "}":                        0,
		`hacoord_transitions_total{` + web + `,to="backup"}`: 1,
		"hacoord_lease_remaining_seconds{" + web + "}":       0,
	} {
		if v := got[key]; v != want {
			t.Errorf("backup: %s = %v, want %v", key, v, want)
		}
	}

	// A master whose deadline passes without a renewal fences itself.
	el.states <- election.State{Role: election.Master, Term: 9, ValidUntil: time.Now().Add(200 * time.Millisecond), Reason: "elected"}
	waitStatus(t, changes, "fenced", func(s election.Status) bool { return s.Fenced })
	got = scrape(t, m.reg)
	for key, want := range map[string]float64{
		"hacoord_master{" + web + "}":                        0,
		"hacoord_self_fence_total{" + web + "}":              1,
		"hacoord_takeover_seconds_count{" + web + "}":        2,
		`hacoord_transitions_total{` + web + `,to="master"}`: 2,
	} {
		if v := got[key]; v != want {
			t.Errorf("fenced: %s = %v, want %v", key, v, want)
		}
	}
}

func countPrefix(m map[string]float64, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// TestMetricsEventHooks: the backends' round trips and the hooks' runs land in their families.
func TestMetricsEventHooks(t *testing.T) {
	m := newMetrics(nil)
	p := &plan{instances: []*instancePlan{{name: "db", group: "db", hooks: mapHooks(hookKeys{Fence: "/bin/true", Notify: "/bin/false"})}}}
	m.instrument(p)
	ip := p.instances[0]
	ip.etcd.OnRTT(3 * time.Millisecond)
	ip.zk.OnRTT(5 * time.Millisecond)
	ctx := context.Background()
	if err := ip.hooks["hooks.fence"].Run(ctx, fencing.Event{Group: "db", Node: "n1", Role: "master", Term: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ip.hooks["hooks.notify"].Run(ctx, fencing.Event{Group: "db", Node: "n1", Role: "master", Term: 1}); err == nil {
		t.Fatal("/bin/false succeeded")
	}
	got := scrape(t, m.reg)
	db := `group="db",instance="db"`
	for key, want := range map[string]float64{
		"hacoord_store_rtt_seconds_count{" + db + "}":                                     2,
		`hacoord_hook_runs_total{group="db",hook="fence",instance="db",result="ok"}`:      1,
		`hacoord_hook_runs_total{group="db",hook="notify",instance="db",result="failed"}`: 1,
		`hacoord_hook_runs_total{group="db",hook="notify",instance="db",result="ok"}`:     0,
	} {
		if v := got[key]; v != want {
			t.Errorf("%s = %v, want %v", key, v, want)
		}
	}
	if s := got["hacoord_store_rtt_seconds_sum{"+db+"}"]; s < 0.0079 || s > 0.0081 {
		t.Errorf("round trips sum to %vs, want 0.008", s)
	}
}

// TestHealthz: 503 with the reason while starting, in Fault, or with a wedged loop; 200 once the
// loop turns and the node is a backup or master.
func TestHealthz(t *testing.T) {
	in, el, m, changes := testInstance(t)
	now := time.Now()
	if r := unhealthy(nil, now); len(r) != 1 || !strings.Contains(r[0], "starting") {
		t.Errorf("no instance: %v", r)
	}
	if r := unhealthy([]*instance{in}, now); len(r) != 1 || !strings.Contains(r[0], "has not turned") {
		t.Errorf("before Run: %v", r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.co.Run(ctx) }()
	defer func() { cancel(); <-done }()
	el.states <- election.State{Role: election.Fault, Reason: "no session"}
	waitStatus(t, changes, "fault", func(s election.Status) bool { return s.State.Role == election.Fault })
	if r := unhealthy([]*instance{in}, time.Now()); len(r) != 1 || !strings.Contains(r[0], "fault: no session") {
		t.Errorf("fault: %v", r)
	}
	el.states <- election.State{Role: election.Backup, Reason: "campaigning"}
	waitStatus(t, changes, "backup", func(s election.Status) bool { return s.State.Role == election.Backup })
	if r := unhealthy([]*instance{in}, time.Now()); len(r) != 0 {
		t.Errorf("backup: %v, want healthy", r)
	}
	if r := unhealthy([]*instance{in}, time.Now().Add(healthStall+election.TurnInterval)); len(r) != 1 || !strings.Contains(r[0], "wedged") {
		t.Errorf("a loop not turned for %v: %v", healthStall+election.TurnInterval, r)
	}

	// Over HTTP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(m.healthz)}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	code, body := get(t, "http://"+ln.Addr().String()+"/healthz")
	if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("healthy: %d %q", code, body)
	}
	el.states <- election.State{Role: election.Fault, Reason: "health check failing"}
	waitStatus(t, changes, "fault", func(s election.Status) bool { return s.State.Role == election.Fault })
	code, body = get(t, "http://"+ln.Addr().String()+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "instance web: fault: health check failing") {
		t.Errorf("fault: %d %q", code, body)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestListenMetrics: the daemon's server answers /metrics in the text format; an address in use
// is a configuration error naming the flag; an empty one serves nothing.
func TestListenMetrics(t *testing.T) {
	m, err := listenMetrics("127.0.0.1:0", &plan{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	addr := m.ln.Addr().String()
	code, body := get(t, "http://"+addr+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "# TYPE hacoord_build_info gauge") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	code, body = get(t, "http://"+addr+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/healthz with no instance: %d %q", code, body)
	}

	_, err = listenMetrics(addr, &plan{}, zap.NewNop())
	var ce configError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "--metrics-address "+addr) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second bind of %s: %v, want a configError naming --metrics-address", addr, err)
	}
	m.close()
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("still listening on %s after close", addr)
	}
	if off, err := listenMetrics("", &plan{}, zap.NewNop()); off != nil || err != nil {
		t.Errorf("empty address: %v, %v; want nothing", off, err)
	}
	off := (*metrics)(nil)
	off.watch(nil)
	off.close()
}

// TestSplitBrainAlarms: an alarm is logged at error and counted at once, not again within
// alarmInterval for the same VIP and MAC (another MAC is another alarm), again after it; the
// status lists it for alarmShown after it was last heard.
func TestSplitBrainAlarms(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	a := newAlarms(zap.New(core))
	t0 := time.Now()
	mac1, mac2 := "02:00:00:00:00:01", "02:00:00:00:00:02"
	if !a.raise(t0, alarmARP, "10.0.0.100/24", mac1, "arp: another host answers for 10.0.0.100/24 at "+mac1) {
		t.Error("first alarm not logged")
	}
	if a.raise(t0.Add(5*time.Second), alarmARP, "10.0.0.100/24", mac1, "again") {
		t.Error("logged again within 10s")
	}
	if !a.raise(t0.Add(5*time.Second), alarmARP, "10.0.0.100/24", mac2, "arp: another host answers for 10.0.0.100/24 at "+mac2) {
		t.Error("another MAC not logged")
	}
	if !a.raise(t0.Add(alarmInterval), alarmARP, "10.0.0.100/24", mac1, "arp: another host answers for 10.0.0.100/24 at "+mac1) {
		t.Error("not logged again after 10s")
	}
	if n := a.count(alarmARP); n != 3 {
		t.Errorf("count %d, want 3", n)
	}
	if n := logs.FilterField(zap.String("mac", mac1)).Len(); n != 2 {
		t.Errorf("%d error lines name %s, want 2", n, mac1)
	}
	if r := a.recent(t0.Add(alarmInterval + time.Second)); len(r) != 2 || !strings.Contains(r[0], mac1) {
		t.Errorf("recent: %v", r)
	}
	if r := a.recent(t0.Add(alarmInterval + alarmShown)); len(r) != 0 {
		t.Errorf("a minute after: %v", r)
	}
}

// TestMetricsAddressRefused: an address that is not host:port is a configuration error naming the
// flag (exit 2), before anything is opened.
func TestMetricsAddressRefused(t *testing.T) {
	code, _, stderr := runCLI(t, append([]string{"check-config", "--metrics-address", "localhost"}, base...)...)
	if code != exitConfig || !strings.Contains(stderr, `--metrics-address: "localhost" is not host:port`) {
		t.Errorf("exit %d, stderr %q; want 2 naming --metrics-address", code, stderr)
	}
}

// gatedElector is a scriptElector a Gate can gate.
type gatedElector struct{ scriptElector }

func (*gatedElector) SetEligible(bool) {}

// TestMetricsChecksVRRPAndIPVS: the check, VRRP and IPVS families of an instance, read at scrape
// time.
func TestMetricsChecksVRRPAndIPVS(t *testing.T) {
	el := &gatedElector{scriptElector{states: make(chan election.State)}}
	co, err := election.NewCoordinator(el, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	gate, err := election.NewGate(el, 100, []election.Check{{Name: "chk_nginx", Up: true}, {Name: "if:eth1", Up: false}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vrrp.DefaultConfig()
	cfg.Interface, cfg.VRID, cfg.VIPs = "eth0", 51, []netip.Prefix{netip.MustParsePrefix("10.0.0.100/24")}
	vel, err := vrrp.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{plan: &instancePlan{name: "VI_1", group: "VI_1", backend: backendVRRP}, co: co, gate: gate, el: vel}
	m := newMetrics(nil)
	m.watch([]*instance{in})
	got := scrape(t, m.reg)
	vi := `group="VI_1",instance="VI_1"`
	for key, want := range map[string]float64{
		`hacoord_check_up{check="chk_nginx",` + vi + `}`:                     1,
		`hacoord_check_up{check="if:eth1",` + vi + `}`:                       0,
		`hacoord_vrrp_adverts_sent_total{` + vi + `}`:                        0,
		`hacoord_vrrp_adverts_received_total{` + vi + `}`:                    0,
		`hacoord_vrrp_mismatched_adverts_total{` + vi + `,reason="version"}`: 0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	gate.Set("if:eth1", true)
	if v := scrape(t, m.reg)[`hacoord_check_up{check="if:eth1",`+vi+`}`]; v != 1 {
		t.Errorf("after the check passes: hacoord_check_up = %v, want 1", v)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectorFunc(func(ch chan<- prometheus.Metric) {
		collectIPVS(func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{"web", "web"}, extra...)...)
		}, ipvs.Status{Services: []ipvs.ServiceStatus{
			{Service: "TCP 10.0.0.100:80", Quorum: true, RealServers: []ipvs.RealServerStatus{{Up: true}, {Up: false}}},
			{Service: "TCP 10.0.0.100:443", Quorum: false, RealServers: []ipvs.RealServerStatus{{Up: false}}},
		}})
	}))
	got = scrape(t, reg)
	for key, want := range map[string]float64{
		"hacoord_ipvs_services{" + web + "}":                                     2,
		"hacoord_ipvs_services_up{" + web + "}":                                  1,
		`hacoord_ipvs_real_servers_up{` + web + `,service="TCP 10.0.0.100:80"}`:  1,
		`hacoord_ipvs_real_servers{` + web + `,service="TCP 10.0.0.100:80"}`:     2,
		`hacoord_ipvs_real_servers_up{` + web + `,service="TCP 10.0.0.100:443"}`: 0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

// collectorFunc is an unchecked Collector over f.
type collectorFunc func(chan<- prometheus.Metric)

func (collectorFunc) Describe(chan<- *prometheus.Desc)      {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// TestMetricsReloadedHooks: the plans a reload reads are instrumented too, so the notify hooks it
// brings in are counted; with the metrics off the source is left as it is.
func TestMetricsReloadedHooks(t *testing.T) {
	m := newMetrics(nil)
	reread := m.instrumented(func() (*plan, error) {
		return &plan{instances: []*instancePlan{{name: "db", group: "db", hooks: mapHooks(hookKeys{NotifyMaster: "/bin/true"})}}}, nil
	})
	p, err := reread()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.instances[0].hooks["hooks.notify_master"].Run(context.Background(), fencing.Event{Group: "db", Role: "master"}); err != nil {
		t.Fatal(err)
	}
	if v := scrape(t, m.reg)[`hacoord_hook_runs_total{group="db",hook="notify_master",instance="db",result="ok"}`]; v != 1 {
		t.Errorf("reloaded notify_master runs: %v, want 1", v)
	}
	var off *metrics
	if off.instrumented(nil) != nil {
		t.Error("metrics off: a nil source changed")
	}
}
