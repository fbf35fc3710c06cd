// Package health tells whether this node is fit to be master, as keepalived's vrrp_script and
// track_interface do: track scripts (a program's exit status, run on a schedule with rise/fall
// hysteresis) and tracked interfaces (link up with carrier). A Monitor runs the checks and reports
// every verdict that changes to a Sink, which in hacoord is the instance's election.Gate: the Gate,
// not this package, decides what a failing check means for the candidacy (withdraw it, or move a
// VRRP priority by the check's weight).
//
// A track script starts failing until its first run passes, so a node is never master on the
// strength of a check that has not run yet. A tracked interface starts in the state the kernel
// reports when the Monitor is built. The reference addresses (track_reference, reference.go) are
// one check that passes while any of them answers ARP or ICMP echo; it starts failing too.
package health

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

// Defaults of the checks.
const (
	// DefaultScriptInterval is the time between two runs of a track script (keepalived: 1s; hacoord
	// has always used 2s).
	DefaultScriptInterval = 2 * time.Second
	// LinkPollInterval is how often a tracked interface's state is read.
	LinkPollInterval = 500 * time.Millisecond
)

// Script is keepalived's vrrp_script: a program whose exit status says whether this node is fit to
// be master. It is started directly, without a shell (Script is split on blanks into the program
// and its arguments): write `sh -c '...'` for one.
type Script struct {
	// Name identifies the check in logs, in the Gate and in status. Unique among an instance's
	// scripts.
	Name string `yaml:"name"`
	// Script is the command line.
	Script string `yaml:"script"`
	// Interval between runs; 0 means DefaultScriptInterval.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Timeout bounds one run (its process group is killed); 0 means Interval.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// Rise and Fall are the consecutive passes and failures that change the verdict; 0 means 1.
	Rise int `yaml:"rise,omitempty"`
	Fall int `yaml:"fall,omitempty"`
	// Weight is election.Check.Weight: the VRRP priority change; 0 takes the node out while the
	// script fails. Quorum backends withdraw the candidacy on any failing check.
	Weight int `yaml:"weight,omitempty"`
}

// Interface is keepalived's track_interface: the node is fit only while the link is up and has
// carrier.
type Interface struct {
	Name   string `yaml:"name"`
	Weight int    `yaml:"weight,omitempty"`
}

// Config lists one instance's checks. Its YAML keys are the instance's track_scripts and
// track_interfaces.
type Config struct {
	Scripts    []Script    `yaml:"track_scripts,omitempty"`
	Interfaces []Interface `yaml:"track_interfaces,omitempty"`
	// References are the track_reference addresses (reference.go): the node is fit while it
	// reaches at least one.
	References []Reference `yaml:"track_reference,omitempty"`
}

// IsZero reports whether c has no checks.
func (c Config) IsZero() bool {
	return len(c.Scripts) == 0 && len(c.Interfaces) == 0 && len(c.References) == 0
}

// maxIfNameLen is IFNAMSIZ-1, the longest interface name the kernel accepts.
const maxIfNameLen = 15

// Validate reports every problem with c, joined; each names its key (track_scripts[0].name).
func (c Config) Validate() error {
	errs := append(c.validateScripts(), c.validateInterfaces()...)
	return errors.Join(append(errs, validateReferences(c.References)...)...)
}

func keyed(key, format string, args ...any) error {
	return fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...))
}

func (c Config) validateScripts() []error {
	var errs []error
	seen := map[string]int{}
	for i, s := range c.Scripts {
		key := fmt.Sprintf("track_scripts[%d]", i)
		switch j, dup := seen[s.Name]; {
		case s.Name == "":
			errs = append(errs, keyed(key+".name", "required"))
		case dup:
			errs = append(errs, keyed(key+".name", "%q is also track_scripts[%d]", s.Name, j))
		default:
			seen[s.Name] = i
		}
		if len(strings.Fields(s.Script)) == 0 {
			errs = append(errs, keyed(key+".script", "required (the program to run)"))
		}
		if s.Interval < 0 {
			errs = append(errs, keyed(key+".interval", "%v is negative", s.Interval))
		}
		if s.Timeout < 0 {
			errs = append(errs, keyed(key+".timeout", "%v is negative", s.Timeout))
		}
		if s.Rise < 0 {
			errs = append(errs, keyed(key+".rise", "%d is negative", s.Rise))
		}
		if s.Fall < 0 {
			errs = append(errs, keyed(key+".fall", "%d is negative", s.Fall))
		}
		if s.Weight < -254 || s.Weight > 254 {
			errs = append(errs, keyed(key+".weight", "%d is outside -254..254", s.Weight))
		}
	}
	return errs
}

func (c Config) validateInterfaces() []error {
	var errs []error
	seen := map[string]int{}
	for i, t := range c.Interfaces {
		key := fmt.Sprintf("track_interfaces[%d]", i)
		switch j, dup := seen[t.Name]; {
		case t.Name == "":
			errs = append(errs, keyed(key+".name", "required"))
		case len(t.Name) > maxIfNameLen || strings.ContainsAny(t.Name, "/: \t\n"):
			errs = append(errs, keyed(key+".name", "%q is not an interface name", t.Name))
		case dup:
			errs = append(errs, keyed(key+".name", "%q is also track_interfaces[%d]", t.Name, j))
		default:
			seen[t.Name] = i
		}
		if t.Weight < -254 || t.Weight > 254 {
			errs = append(errs, keyed(key+".weight", "%d is outside -254..254", t.Weight))
		}
	}
	return errs
}

// A Sink hears every change of a check's verdict. election.Gate is one. Set must not block.
type Sink interface {
	Set(name string, up bool)
}

// Monitor runs one instance's checks. New builds it; Run runs it; Close releases its netlink
// handle.
type Monitor struct {
	checkers []*check.Checker
	checks   []election.Check
	nl       *netlink.Handle // nil without tracked interfaces and references
	refs     *referenceSet   // the references' checkers, reported together as ReferenceCheck
	closers  []func()        // the references' sockets
}

// New validates cfg and builds one checker per script and tracked interface; it starts nothing. A
// tracked interface that does not exist is an error naming its key. The netlink handle the
// interface checks use is opened here, in the network namespace of the calling thread (as
// vip.New's sockets are), so Run may be called from any goroutine. log (nil: none) is used as
// given; the caller names it.
func New(cfg Config, log *zap.Logger) (*Monitor, error) { return newMonitor(cfg, log, nil) }

// newMonitor is New; start, when not nil, says which checks start in which verdict instead of
// their usual one (reload.go).
func newMonitor(cfg Config, log *zap.Logger, start map[string]bool) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	m := &Monitor{refs: newReferenceSet()}
	for i, s := range cfg.Scripts {
		up, ok := start[s.Name]
		c, err := newScriptChecker(s, ok && up, log.With(zap.String("track-script", s.Name)))
		if err != nil {
			return nil, fmt.Errorf("track_scripts[%d]: %w", i, err)
		}
		m.checkers = append(m.checkers, c)
		m.checks = append(m.checks, election.Check{Name: s.Name, Weight: s.Weight, Up: c.Initial().Up})
	}
	if len(cfg.Interfaces) == 0 && len(cfg.References) == 0 {
		return m, nil
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("health: netlink: %w", err)
	}
	m.nl = nl
	for i, t := range cfg.Interfaces {
		if _, err := nl.LinkByName(t.Name); err != nil {
			m.Close()
			return nil, fmt.Errorf("track_interfaces[%d].name: %s: %w", i, t.Name, err)
		}
		m.addInterface(t, start, log.With(zap.String("track-interface", t.Name)))
	}
	if err := m.addReferences(cfg.References, start[ReferenceCheck], log); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// InterfaceCheck is the name a tracked interface has among the checks ("interface:eth1").
func InterfaceCheck(name string) string { return "interface:" + name }

// newScriptChecker builds s's checker, failing until its first run passes unless up.
func newScriptChecker(s Script, up bool, log *zap.Logger) (*check.Checker, error) {
	interval := s.Interval
	if interval == 0 {
		interval = DefaultScriptInterval
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = interval
	}
	t := check.Timing{Interval: interval, ConnectTimeout: timeout, Retry: check.Retries(0), Rise: s.Rise, Fall: s.Fall, Alpha: !up}
	return check.New(s.Name, check.Config{Script: &check.Script{Timing: t, Path: s.Script, Timeout: timeout}}, netip.AddrPort{}, log)
}

func (m *Monitor) addInterface(t Interface, start map[string]bool, log *zap.Logger) {
	name := InterfaceCheck(t.Name)
	up := LinkUp(m.nl, t.Name) == nil
	if s, ok := start[name]; ok {
		up = s // its first poll corrects it
	}
	timing := check.Timing{Interval: LinkPollInterval, Retry: check.Retries(0), Rise: 1, Fall: 1, Alpha: !up}
	c := check.NewWithProber(name, "track-interface", timing, check.ProberFunc(func(context.Context) (int, error) {
		return check.NoWeight, LinkUp(m.nl, t.Name)
	}), log)
	m.checkers = append(m.checkers, c)
	m.checks = append(m.checks, election.Check{Name: name, Weight: t.Weight, Up: up})
}

// Checks returns the Gate's view of the checks: names, weights and starting verdicts.
func (m *Monitor) Checks() []election.Check { return append([]election.Check(nil), m.checks...) }

// Run runs every check until ctx is done and reports each change of verdict to sink, then returns
// nil (or the checkers' errors, joined). It owns and waits for one goroutine per check.
func (m *Monitor) Run(ctx context.Context, sink Sink) error {
	if len(m.checkers) == 0 {
		return nil
	}
	results := make(chan check.Status)
	done := make(chan error, len(m.checkers))
	for _, c := range m.checkers {
		go func() { done <- c.Run(ctx, results) }()
	}
	var errs []error
	for running := len(m.checkers); running > 0; {
		select {
		case s := <-results:
			if m.refs.has(s.Name) {
				sink.Set(ReferenceCheck, m.refs.set(s.Name, s.Up)) // any reference up
				continue
			}
			sink.Set(s.Name, s.Up)
		case err := <-done:
			running--
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Close releases the netlink handle. Call it after Run has returned.
func (m *Monitor) Close() {
	for _, c := range m.closers {
		c()
	}
	m.closers = nil
	if m.nl != nil {
		m.nl.Close()
		m.nl = nil
	}
}

// LinkUp returns nil when the named link is administratively up and has carrier (or reports no
// carrier state, as loopback does), and otherwise an error saying which. h nil uses the calling
// thread's namespace.
func LinkUp(h *netlink.Handle, name string) error {
	byName := netlink.LinkByName
	if h != nil {
		byName = h.LinkByName
	}
	l, err := byName(name)
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
