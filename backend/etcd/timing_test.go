package etcd_test

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/election/electiontest"
	"github.com/hacoord/hacoord/internal/etcdtest"
)

// The ride-out rule: ttl - margin - keepalive interval > 2 election timeouts + 100ms, with the
// defaults margin = ttl/10 (100ms..1s) and interval = ttl/4.
func TestTimingRideOut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tm      etcd.Timing
		wantET  time.Duration
		wantTTL time.Duration
	}{
		// etcd's defaults (election 1s) give a minimum of 2s: the longest timeout that does is 1.33s.
		{"inferred from a 2s minimum", etcd.TimingFromMinTTL(2 * time.Second), 1333333333, 5 * time.Second},
		{"inferred from a 1s minimum", etcd.TimingFromMinTTL(time.Second), 666666666, 3 * time.Second},
		// 4s: 4 - 0.4 - 1 = 2.6s > 2.1s; 3s: 3 - 0.3 - 0.75 = 1.95s < 2.1s.
		{"etcd defaults, known", etcd.Timing{ElectionTimeout: time.Second, MinTTL: 2 * time.Second}, time.Second, 4 * time.Second},
		// 2s: 2 - 0.2 - 0.5 = 1.3s > 1.1s.
		{"cluster profile, known", etcd.Timing{ElectionTimeout: 500 * time.Millisecond, MinTTL: time.Second}, 500 * time.Millisecond, 2 * time.Second},
		// Never below the minimum the store grants.
		{"fast single member", etcd.Timing{ElectionTimeout: 100 * time.Millisecond, MinTTL: 3 * time.Second}, 100 * time.Millisecond, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tm.ElectionTimeout != tc.wantET {
				t.Errorf("election timeout %v, want %v", tc.tm.ElectionTimeout, tc.wantET)
			}
			got := tc.tm.RideOutTTL()
			if got != tc.wantTTL {
				t.Errorf("RideOutTTL() = %v, want %v (%s)", got, tc.wantTTL, tc.tm)
			}
			if !tc.tm.RidesOut(got, got/10, got/4) && got >= time.Second {
				t.Errorf("RideOutTTL %v does not ride out by RidesOut", got)
			}
			if short := got - time.Second; short >= max(tc.tm.MinTTL, time.Second) && tc.tm.RidesOut(short, short/10, short/4) {
				t.Errorf("%v already rides out: RideOutTTL is not the shortest", short)
			}
		})
	}
}

// LearnTiming reads the store's minimum TTL from a 1s grant.
func TestLearnTiming(t *testing.T) {
	for _, tc := range []struct {
		tick, election uint
		want           time.Duration
	}{
		{etcdtest.FastTickMs, etcdtest.FastElectionMs, time.Second},
		{50, 700, 2 * time.Second}, // 1.05s rounded up
	} {
		srv := etcdtest.Start(t, etcdtest.WithTimeouts(tc.tick, tc.election))
		tm, err := etcd.LearnTiming(opCtx(t), adminClient(t, srv))
		if err != nil {
			t.Fatal(err)
		}
		if tm.MinTTL != tc.want || tm.ElectionTimeout != tc.want*2/3 {
			t.Errorf("heartbeat %dms, election %dms: %s, want minimum TTL %v", tc.tick, tc.election, tm, tc.want)
		}
	}
}

// At start-up the elector warns, once, when its TTL cannot ride out a store leader change, naming
// the TTL that would; it stays quiet when the TTL can.
func TestWarnsWhenTTLCannotRideOut(t *testing.T) {
	srv := etcdtest.Start(t)
	for _, tc := range []struct {
		name string
		et   time.Duration
		warn bool
	}{
		{"inferred", 0, true},                               // 1s - 0.1 - 0.25 < 2 x 0.67 + 0.1
		{"known fast store", 200 * time.Millisecond, false}, // 0.65s > 0.5s
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.InfoLevel)
			cfg := testConfig(srv.Endpoints()[0], "warn", tc.name)
			cfg.StoreElectionTimeout = tc.et
			el, err := etcd.New(cfg, zap.New(zapcore.NewTee(core, testLogger(t).Core())))
			if err != nil {
				t.Fatal(err)
			}
			r := electiontest.Start(t, "a", candidate(el))
			r.Wait(t, settle, "Master", lastIs(election.Master))
			warns := logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("ride out").All()
			if tc.warn != (len(warns) == 1) || len(warns) > 1 {
				t.Fatalf("%d ride-out warnings, want %v", len(warns), tc.warn)
			}
			if tc.warn {
				fields := warns[0].ContextMap()
				if fields["ride-out-ttl"] != "3s" && fields["ride-out-ttl"] != 3*time.Second {
					t.Errorf("warning names ride-out-ttl %v, want 3s: %v", fields["ride-out-ttl"], fields)
				}
			}
		})
	}
}
