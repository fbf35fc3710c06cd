package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/vrrp"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/fencing"
	"github.com/hacoord/hacoord/ipvs"
)

// The daemon's Prometheus metrics and /healthz (README "Metrics"). Most families are read from the
// instances' current state at scrape time (Coordinator.Status, the VRRP Elector's Stats, the VIP
// Managers' counters, the Gate's verdicts, the IPVS status); the events no state keeps (takeovers,
// transitions, self-fences, store round trips, hook runs) are counted as they happen, through the
// Coordinator's OnChange, the backends' OnRTT and the hooks' Observe.

// defaultMetricsAddress is --metrics-address unless set: loopback only.
const defaultMetricsAddress = "127.0.0.1:9732"

// healthStall is how old an instance's Coordinator.LastTurn may be before /healthz reports the
// loop wedged: busy with one event for three TurnIntervals.
const healthStall = 3 * election.TurnInterval

var instanceLabels = []string{"group", "instance"}

// metrics is the daemon's registry and the families counted on events; nil when
// --metrics-address is empty (every method is then a no-op).
type metrics struct {
	reg *prometheus.Registry
	log *zap.Logger
	ln  net.Listener
	srv *http.Server
	ran chan struct{} // closed when Serve returned

	transitions *prometheus.CounterVec
	takeover    *prometheus.HistogramVec
	storeRTT    *prometheus.HistogramVec
	selfFence   *prometheus.CounterVec
	hookRuns    *prometheus.CounterVec

	mu    sync.Mutex
	insts []*instance // set by watch; read at scrape time
}

// listenMetrics binds addr (the daemon's --metrics-address; "" turns the metrics off and returns
// nil) in the calling thread's network namespace, serves /metrics and /healthz on it, and
// instruments the plan's backends and hooks (call it before the instances are opened). A bind
// failure is a configError naming the flag.
func listenMetrics(addr string, p *plan, log *zap.Logger) (*metrics, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, configError{fmt.Errorf("--metrics-address %s: %w", addr, err)}
	}
	m := newMetrics(log)
	m.ln = ln
	m.instrument(p)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log)}))
	mux.HandleFunc("/healthz", m.healthz)
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	m.ran = make(chan struct{})
	go func() {
		defer close(m.ran)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	log.Info("serving metrics", zap.String("address", ln.Addr().String()))
	return m, nil
}

// newMetrics builds the registry with every family.
func newMetrics(log *zap.Logger) *metrics {
	if log == nil {
		log = zap.NewNop()
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hacoord_transitions_total", Help: "Changes of the election role, by the role entered.",
		}, append(instanceLabels, "to")),
		takeover: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hacoord_takeover_seconds",
			Help:    "Time from the backend's 'you are master' to the VIPs bound and their first gratuitous ARP / NA sent (the fence hook, IPVS and the conflict probe included).",
			Buckets: []float64{.005, .01, .025, .05, .075, .1, .25, .5, 1, 2.5, 5, 10},
		}, instanceLabels),
		storeRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hacoord_store_rtt_seconds",
			Help:    "Round trip of the etcd lease keepalives / ZooKeeper liveness Syncs.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, instanceLabels),
		selfFence: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hacoord_self_fence_total", Help: "Times the node let go of the VIPs because its deadline passed without a renewal.",
		}, instanceLabels),
		hookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hacoord_hook_runs_total", Help: "Hook runs, by hook (YAML key without hooks.) and result (ok, failed).",
		}, append(instanceLabels, "hook", "result")),
	}
	m.reg.MustRegister(m.transitions, m.takeover, m.storeRTT, m.selfFence, m.hookRuns, stateCollector{m}, buildInfo())
	return m
}

// buildInfo is hacoord_build_info: 1, with the version, revision and Go version as labels.
func buildInfo() prometheus.Collector {
	rev, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" {
				rev = kv.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hacoord_build_info", Help: "1, labelled with the build's version, revision and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": rev, "goversion": goVersion},
	})
	g.Set(1)
	return g
}

// instrument hooks the event families into the plan: the backends' round trips and the hooks'
// runs. It runs before the instances are opened (they copy these Configs).
func (m *metrics) instrument(p *plan) {
	if m == nil {
		return
	}
	for _, ip := range p.instances {
		labels := prometheus.Labels{"group": ip.group, "instance": ip.name}
		rtt := m.storeRTT.With(labels)
		m.takeover.With(labels) // present, empty, from the start
		m.selfFence.With(labels)
		observe := func(d time.Duration) { rtt.Observe(d.Seconds()) }
		ip.etcd.OnRTT, ip.zk.OnRTT = observe, observe
		for key, h := range ip.hooks {
			name := strings.TrimPrefix(key, "hooks.")
			ok := m.hookRuns.WithLabelValues(ip.group, ip.name, name, "ok")
			failed := m.hookRuns.WithLabelValues(ip.group, ip.name, name, "failed")
			h.Observe = func(_ fencing.Event, err error) {
				if err != nil {
					failed.Inc()
				} else {
					ok.Inc()
				}
			}
			ip.hooks[key] = h
		}
	}
}

// watch makes the instances' state readable at scrape time and counts their Coordinators' events.
// Call it after wireInstances and before the instances run.
func (m *metrics) watch(insts []*instance) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.insts = slices.Clone(insts)
	m.mu.Unlock()
	for _, in := range insts {
		m.watchCoordinator(in.co, in.plan.group, in.plan.name)
	}
}

// watchCoordinator counts co's transitions, takeovers and self-fences.
func (m *metrics) watchCoordinator(co *election.Coordinator, group, name string) {
	labels := prometheus.Labels{"group": group, "instance": name}
	takeover, fenced := m.takeover.With(labels), m.selfFence.With(labels)
	var last election.Status
	co.OnChange(func(cs election.Status) {
		if cs.State.Role != last.State.Role {
			m.transitions.WithLabelValues(group, name, cs.State.Role.String()).Inc()
		}
		if cs.Promoted && !last.Promoted {
			takeover.Observe(cs.Takeover.Seconds())
		}
		if cs.Fenced && !last.Fenced {
			fenced.Inc()
		}
		last = cs
	})
}

// close stops serving (the listener is closed; requests in flight get a second).
func (m *metrics) close() {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		_ = m.srv.Close()
	}
	<-m.ran
}

// instances returns what watch was given.
func (m *metrics) instances() []*instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.insts
}

// healthz is /healthz: 200 "ok" while every instance's Coordinator loop turns and the node is in a
// state it can hold; else 503 with one reason a line.
func (m *metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	reasons := unhealthy(m.instances(), time.Now())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(reasons) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(reasons, "\n"))
		return
	}
	fmt.Fprintln(w, "ok")
}

// unhealthy returns why the node is not healthy at now, one reason per problem; none when it is:
// no instance yet (starting), a Coordinator loop that has not turned for healthStall (wedged in an
// action), an instance still waiting for its backend's first State or in Fault (it cannot take
// part), and VIPs held past the deadline of the State that granted them.
func unhealthy(insts []*instance, now time.Time) []string {
	if len(insts) == 0 {
		return []string{"starting: no instance running yet"}
	}
	var out []string
	for _, in := range insts {
		name := in.plan.name
		last := in.co.LastTurn()
		cs := in.co.Status()
		switch {
		case last.IsZero():
			out = append(out, fmt.Sprintf("instance %s: starting: the coordinator loop has not turned yet", name))
			continue
		case now.Sub(last) > healthStall:
			out = append(out, fmt.Sprintf("instance %s: the coordinator loop is wedged: it last turned %s ago", name, now.Sub(last).Round(time.Millisecond)))
		}
		switch s := cs.State; {
		case s.Role == election.Init:
			out = append(out, fmt.Sprintf("instance %s: no state from the %s backend yet", name, in.plan.backend))
		case s.Role == election.Fault:
			out = append(out, fmt.Sprintf("instance %s: fault: %s", name, s.Reason))
		case cs.Promoted && !s.ValidUntil.IsZero() && !now.Before(s.ValidUntil):
			out = append(out, fmt.Sprintf("instance %s: holds the VIPs %s past its deadline", name, now.Sub(s.ValidUntil).Round(time.Millisecond)))
		}
	}
	return out
}

// stateCollector reads the instances' state at scrape time.
type stateCollector struct{ m *metrics }

var (
	descMaster = prometheus.NewDesc("hacoord_master", "1 while this node holds the VIPs (every action promoted), else 0.", instanceLabels, nil)
	descRole   = prometheus.NewDesc("hacoord_role", "1 for the node's current election role (init, backup, master, fault), 0 for the others.",
		append(instanceLabels, "role"), nil)
	descTerm  = prometheus.NewDesc("hacoord_term", "The current master's term (the fencing token while this node is master); 0 when unknown.", instanceLabels, nil)
	descLease = prometheus.NewDesc("hacoord_lease_remaining_seconds",
		"While master: time left until the self-fencing deadline (it rises with every renewal); 0 otherwise.", instanceLabels, nil)
	descGARP    = prometheus.NewDesc("hacoord_garp_sent_total", "Gratuitous ARP and unsolicited NA frames sent.", instanceLabels, nil)
	descCheckUp = prometheus.NewDesc("hacoord_check_up", "1 while a health check (track script, interface, reference) passes, else 0.",
		append(instanceLabels, "check"), nil)
	descAdvSent = prometheus.NewDesc("hacoord_vrrp_adverts_sent_total", "VRRP adverts sent (once each, however many unicast peers).", instanceLabels, nil)
	descAdvRecv = prometheus.NewDesc("hacoord_vrrp_adverts_received_total",
		"VRRP packets received from other routers (accepted or dropped; this router's own are not counted).", instanceLabels, nil)
	descMismatch = prometheus.NewDesc("hacoord_vrrp_mismatched_adverts_total",
		"VRRP adverts for this VRID from a router configured differently, by reason (version, vips, auth, advert-int).",
		append(instanceLabels, "reason"), nil)
	descIPVSServices = prometheus.NewDesc("hacoord_ipvs_services_up",
		"IPVS virtual services whose healthy real servers reach their quorum.", instanceLabels, nil)
	descIPVSServicesAll = prometheus.NewDesc("hacoord_ipvs_services", "IPVS virtual services configured.", instanceLabels, nil)
	descIPVSReals       = prometheus.NewDesc("hacoord_ipvs_real_servers_up", "IPVS real servers whose health check passes, by virtual service.",
		append(instanceLabels, "service"), nil)
	descIPVSRealsAll = prometheus.NewDesc("hacoord_ipvs_real_servers", "IPVS real servers configured, by virtual service.",
		append(instanceLabels, "service"), nil)
	descAlarms = prometheus.NewDesc("hacoord_split_brain_alarms_total",
		"Split-brain alarms raised while master, by kind: arp / ndp (another host answers for a VIP with its MAC), vrrp (another master's adverts for our VRID). Rate-limited: once per 10s per VIP or router and MAC.",
		append(instanceLabels, "kind"), nil)
)

var roles = []election.Role{election.Init, election.Backup, election.Master, election.Fault}

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMaster, descRole, descTerm, descLease, descGARP, descCheckUp, descAdvSent, descAdvRecv,
		descMismatch, descIPVSServices, descIPVSServicesAll, descIPVSReals, descIPVSRealsAll, descAlarms} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, in := range c.m.instances() {
		collectInstance(ch, in, now)
	}
}

// collectInstance sends the scrape-time families of one instance.
func collectInstance(ch chan<- prometheus.Metric, in *instance, now time.Time) {
	g, n := in.plan.group, in.plan.name
	gauge := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{g, n}, extra...)...)
	}
	counter := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{g, n}, extra...)...)
	}
	cs := in.co.Status()
	gauge(descMaster, b2f(cs.Promoted))
	for _, r := range roles {
		gauge(descRole, b2f(cs.State.Role == r), r.String())
	}
	gauge(descTerm, float64(cs.State.Term))
	left := 0.0
	if cs.Promoted && !cs.State.ValidUntil.IsZero() {
		left = max(0, cs.State.ValidUntil.Sub(now).Seconds())
	}
	gauge(descLease, left)
	var garps uint64
	for _, vm := range in.vms {
		garps += vm.Announced()
	}
	counter(descGARP, float64(garps))
	if in.gate != nil {
		for name, up := range in.gate.Verdicts() {
			gauge(descCheckUp, b2f(up), name)
		}
	}
	if e, ok := in.el.(*vrrp.Elector); ok {
		st := e.Stats()
		counter(descAdvSent, float64(st.Sent))
		counter(descAdvRecv, float64(st.Received-st.Own))
		for _, r := range []vrrp.MismatchReason{vrrp.MismatchVersion, vrrp.MismatchVIPs, vrrp.MismatchAuth, vrrp.MismatchAdvertInt} {
			counter(descMismatch, float64(st.Mismatched[r]), string(r))
		}
	}
	if in.ipv != nil && len(in.plan.ipvs.VirtualServers) > 0 {
		collectIPVS(gauge, in.ipv.Status())
	}
	if in.alarms != nil {
		for _, k := range alarmKinds {
			counter(descAlarms, float64(in.alarms.count(k)), k)
		}
	}
}

// collectIPVS sends the IPVS families of one instance's status.
func collectIPVS(gauge func(*prometheus.Desc, float64, ...string), st ipvs.Status) {
	up := 0
	for _, s := range st.Services {
		if s.Quorum {
			up++
		}
		alive := 0
		for _, r := range s.RealServers {
			if r.Up {
				alive++
			}
		}
		gauge(descIPVSReals, float64(alive), s.Service)
		gauge(descIPVSRealsAll, float64(len(s.RealServers)), s.Service)
	}
	gauge(descIPVSServices, float64(up))
	gauge(descIPVSServicesAll, float64(len(st.Services)))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// checkMetrics checks --metrics-address: empty, or host:port.
func (b *planner) checkMetrics() {
	a := b.s.daemon.MetricsAddress
	if a == "" {
		return
	}
	if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
		b.fail(b.s.key(nil, "metrics_address", ""), "%q is not host:port (e.g. 127.0.0.1:9732; empty turns the metrics off)", a)
	}
}

// instrumented returns reread (a reload's configuration source) with every plan it returns
// instrumented, so the hooks a reload brings in are counted too; reread itself when the metrics
// are off.
func (m *metrics) instrumented(reread func() (*plan, error)) func() (*plan, error) {
	if m == nil || reread == nil {
		return reread
	}
	return func() (*plan, error) {
		p, err := reread()
		if p != nil {
			m.instrument(p)
		}
		return p, err
	}
}
