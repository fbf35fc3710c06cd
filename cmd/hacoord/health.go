package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/election"
	"github.com/hacoord/hacoord/ipvs/check"
)

// TrackScript is keepalived's vrrp_script: a program whose exit status says whether this node is
// fit to be master. It is started directly (no shell): write `sh -c '...'` for one.
type TrackScript struct {
	Name   string `yaml:"name"`
	Script string `yaml:"script"`
	// Interval between runs (default 2s); Timeout bounds one run (default: Interval).
	Interval Duration `yaml:"interval,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty"`
	// Rise and Fall are the consecutive passes / failures that change the state (default 1).
	Rise int `yaml:"rise,omitempty"`
	Fall int `yaml:"fall,omitempty"`
	// Weight is election.Check.Weight: VRRP priority change; 0 takes the node out when failing.
	Weight int `yaml:"weight,omitempty"`
}

// TrackInterface is keepalived's track_interface: the node is fit only while the link is up.
type TrackInterface struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight,omitempty"`
}

// Defaults of node health checks.
const (
	defaultTrackInterval = 2 * time.Second
	linkPollInterval     = 500 * time.Millisecond
)

func (s Settings) validateTracks() error {
	seen := map[string]bool{}
	for i, ts := range s.TrackScripts {
		key := fmt.Sprintf("track_scripts[%d]", i)
		switch {
		case ts.Name == "":
			return configErrorf("%s.name: required", key)
		case seen[ts.Name]:
			return configErrorf("%s.name %q: listed twice", key, ts.Name)
		case len(strings.Fields(ts.Script)) == 0:
			return configErrorf("%s.script: required (the program to run)", key)
		case ts.Interval < 0 || ts.Timeout < 0 || ts.Rise < 0 || ts.Fall < 0:
			return configErrorf("%s: interval, timeout, rise and fall must not be negative", key)
		}
		seen[ts.Name] = true
	}
	for i, ti := range s.TrackInterfaces {
		key := fmt.Sprintf("track_interfaces[%d]", i)
		if ti.Name == "" {
			return configErrorf("%s.name: required", key)
		}
		if seen["interface:"+ti.Name] {
			return configErrorf("%s.name %q: listed twice", key, ti.Name)
		}
		seen["interface:"+ti.Name] = true
	}
	return nil
}

// healthCheckers builds one checker per track script and tracked interface, and the Gate's view of
// them. A track script starts failing until its first run passes, so a node is never master on the
// strength of a check that has not run yet.
func healthCheckers(s Settings, log *zap.Logger) ([]*check.Checker, []election.Check, error) {
	var cs []*check.Checker
	var gs []election.Check
	for _, ts := range s.TrackScripts {
		interval := time.Duration(ts.Interval)
		if interval == 0 {
			interval = defaultTrackInterval
		}
		timeout := time.Duration(ts.Timeout)
		if timeout == 0 {
			timeout = interval
		}
		t := check.Timing{Interval: interval, ConnectTimeout: timeout, Retry: check.Retries(0), Rise: ts.Rise, Fall: ts.Fall, Alpha: true}
		c, err := check.New(ts.Name, check.Config{Script: &check.Script{Timing: t, Path: ts.Script, Timeout: timeout}}, netip.AddrPort{}, log.With(zap.String("track-script", ts.Name)))
		if err != nil {
			return nil, nil, configErrorf("track_scripts %q: %v", ts.Name, err)
		}
		cs = append(cs, c)
		gs = append(gs, election.Check{Name: ts.Name, Weight: ts.Weight, Up: c.Initial().Up})
	}
	for _, ti := range s.TrackInterfaces {
		name := "interface:" + ti.Name
		if _, err := netlink.LinkByName(ti.Name); err != nil {
			return nil, nil, configErrorf("track_interfaces %q: %v", ti.Name, err)
		}
		up := linkUp(ti.Name) == nil
		t := check.Timing{Interval: linkPollInterval, Retry: check.Retries(0), Rise: 1, Fall: 1, Alpha: !up}
		c := check.NewWithProber(name, "track-interface", t, check.ProberFunc(func(context.Context) (int, error) {
			return check.NoWeight, linkUp(ti.Name)
		}), log.With(zap.String("track-interface", ti.Name)))
		cs = append(cs, c)
		gs = append(gs, election.Check{Name: name, Weight: ti.Weight, Up: up})
	}
	return cs, gs, nil
}

// linkUp returns nil when the link is administratively up and has carrier.
func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	a := l.Attrs()
	if a.Flags&net.FlagUp == 0 {
		return fmt.Errorf("link %s is down", name)
	}
	if a.OperState != netlink.OperUp && a.OperState != netlink.OperUnknown {
		return fmt.Errorf("link %s has no carrier (%s)", name, a.OperState)
	}
	return nil
}

// runHealth runs the checkers and feeds their verdicts to the gate until ctx is done.
func runHealth(ctx context.Context, cs []*check.Checker, g *election.Gate) error {
	if len(cs) == 0 {
		return nil
	}
	results := make(chan check.Status)
	done := make(chan error, len(cs))
	for _, c := range cs {
		go func() { done <- c.Run(ctx, results) }()
	}
	var errs []error
	for running := len(cs); running > 0; {
		select {
		case s := <-results:
			g.Set(s.Name, s.Up)
		case err := <-done:
			running--
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
