// Package check runs health checks the way keepalived's checkers do: a TCP connect (TCP_CHECK), an
// HTTP GET with an expected status and optional body digest (HTTP_GET), or a program's exit status
// (MISC_CHECK). A Checker probes one target every delay_loop, retries a failed probe retry times
// delay_before_retry apart, and turns the probe outcomes into an up/down state with rise/fall
// hysteresis, so a flapping server does not flap the IPVS table.
//
// The package is a leaf: ipvs uses it for real servers, and cmd may use it for node health (track
// scripts). The YAML names are keepalived's, so a keepalived user recognises them.
package check

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Timing is the schedule shared by every kind of checker. Zero fields take the DefaultTiming value.
type Timing struct {
	// Interval is the time between two probes (keepalived's delay_loop).
	Interval time.Duration `yaml:"delay_loop,omitempty"`
	// ConnectTimeout bounds one attempt: the TCP connect, the whole HTTP exchange, or the script run
	// when MISC_CHECK sets no misc_timeout.
	ConnectTimeout time.Duration `yaml:"connect_timeout,omitempty"`
	// Retry is how many more attempts a failed probe gets before it counts as failed (keepalived's
	// retry, formerly nb_get_retry): a probe is 1+Retry attempts at most. Unset takes the default
	// (1); `retry: 0` means no retry, as in keepalived. Retries(n) builds the pointer.
	Retry *int `yaml:"retry,omitempty"`
	// DelayBeforeRetry is the pause between two attempts of one probe.
	DelayBeforeRetry time.Duration `yaml:"delay_before_retry,omitempty"`
	// Rise is how many consecutive passed probes bring a down target up.
	Rise int `yaml:"rise,omitempty"`
	// Fall is how many consecutive failed probes take an up target down.
	Fall int `yaml:"fall,omitempty"`
	// Alpha starts the target down until Rise probes pass (keepalived's alpha); without it a target
	// starts up, as keepalived assumes.
	Alpha bool `yaml:"alpha,omitempty"`
}

// DefaultTiming returns the schedule used for every zero Timing field. keepalived's delay_loop
// default is 60s; 6s is what nearly every keepalived example sets, and what hacoord uses.
func DefaultTiming() Timing {
	return Timing{
		Interval:         6 * time.Second,
		ConnectTimeout:   5 * time.Second,
		Retry:            Retries(1),
		DelayBeforeRetry: 1 * time.Second,
		Rise:             1,
		Fall:             1,
	}
}

// Retries returns a pointer to n, for Timing.Retry.
func Retries(n int) *int { return &n }

// WithDefaults returns t with zero fields (and an unset Retry) replaced by d's.
func (t Timing) WithDefaults(d Timing) Timing {
	if t.Interval == 0 {
		t.Interval = d.Interval
	}
	if t.ConnectTimeout == 0 {
		t.ConnectTimeout = d.ConnectTimeout
	}
	if t.Retry == nil {
		t.Retry = d.Retry
	}
	if t.DelayBeforeRetry == 0 {
		t.DelayBeforeRetry = d.DelayBeforeRetry
	}
	if t.Rise == 0 {
		t.Rise = d.Rise
	}
	if t.Fall == 0 {
		t.Fall = d.Fall
	}
	return t
}

func (t Timing) validate(prefix string) error {
	var errs []error
	if t.Interval < 0 {
		errs = append(errs, fmt.Errorf("%sdelay_loop: %v is negative", prefix, t.Interval))
	}
	if t.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("%sconnect_timeout: %v is negative", prefix, t.ConnectTimeout))
	}
	if t.Retry != nil && *t.Retry < 0 {
		errs = append(errs, fmt.Errorf("%sretry: %d is negative", prefix, *t.Retry))
	}
	if t.DelayBeforeRetry < 0 {
		errs = append(errs, fmt.Errorf("%sdelay_before_retry: %v is negative", prefix, t.DelayBeforeRetry))
	}
	if t.Rise < 0 {
		errs = append(errs, fmt.Errorf("%srise: %d is negative", prefix, t.Rise))
	}
	if t.Fall < 0 {
		errs = append(errs, fmt.Errorf("%sfall: %d is negative", prefix, t.Fall))
	}
	return errors.Join(errs...)
}

// TCP is keepalived's TCP_CHECK: the target is up when a TCP connection to it succeeds.
type TCP struct {
	Timing `yaml:",inline"`
	// ConnectIP and ConnectPort override the address probed (default: the real server's).
	ConnectIP   netip.Addr `yaml:"connect_ip,omitempty"`
	ConnectPort uint16     `yaml:"connect_port,omitempty"`
}

// HTTP is keepalived's HTTP_GET: the target is up when every URL answers with the expected status
// and, where a digest is given, a body whose MD5 matches (what keepalived's genhash prints).
type HTTP struct {
	Timing      `yaml:",inline"`
	ConnectIP   netip.Addr `yaml:"connect_ip,omitempty"`
	ConnectPort uint16     `yaml:"connect_port,omitempty"`
	// VirtualHost is sent as the Host header (default: the probed address).
	VirtualHost string `yaml:"virtualhost,omitempty"`
	URLs        []URL  `yaml:"url"`
}

// URL is one page an HTTP_GET checker fetches.
type URL struct {
	Path string `yaml:"path"`
	// StatusCode is the expected status; 0 accepts any 2xx.
	StatusCode int `yaml:"status_code,omitempty"`
	// Digest is the expected lower-case hex MD5 of the body; empty skips the comparison.
	Digest string `yaml:"digest,omitempty"`
}

// Script is keepalived's MISC_CHECK: the target is up when the program exits 0. With Dynamic
// (misc_dynamic), exit status 1 is down and 2..255 is up with weight status-2; without it every
// non-zero status is down. The program is started directly (no shell): Path is split on blanks
// into the program and its arguments; write `sh -c '...'` to get a shell.
type Script struct {
	Timing `yaml:",inline"`
	Path   string `yaml:"misc_path"`
	// Timeout bounds one run (default: connect_timeout). The program's process group is killed.
	Timeout time.Duration `yaml:"misc_timeout,omitempty"`
	Dynamic bool          `yaml:"misc_dynamic,omitempty"`
}

// Config is one health checker; set exactly one of the three blocks. It sits inline in a real
// server's YAML, so a real server reads like keepalived's: `TCP_CHECK: {connect_timeout: 3s}`.
type Config struct {
	TCP    *TCP    `yaml:"TCP_CHECK,omitempty"`
	HTTP   *HTTP   `yaml:"HTTP_GET,omitempty"`
	Script *Script `yaml:"MISC_CHECK,omitempty"`
}

// IsZero reports whether c configures no checker.
func (c Config) IsZero() bool { return c.TCP == nil && c.HTTP == nil && c.Script == nil }

// Kind returns TCP_CHECK, HTTP_GET, MISC_CHECK or "" for none.
func (c Config) Kind() string {
	switch {
	case c.TCP != nil:
		return "TCP_CHECK"
	case c.HTTP != nil:
		return "HTTP_GET"
	case c.Script != nil:
		return "MISC_CHECK"
	}
	return ""
}

// Timing returns the schedule of the configured checker, defaults applied from d.
func (c Config) Timing(d Timing) Timing {
	switch {
	case c.TCP != nil:
		return c.TCP.Timing.WithDefaults(d)
	case c.HTTP != nil:
		return c.HTTP.Timing.WithDefaults(d)
	case c.Script != nil:
		return c.Script.Timing.WithDefaults(d)
	}
	return d
}

// Validate checks c. Errors name the field with prefix (e.g. "virtual_servers[0].real_servers[1].").
func (c Config) Validate(prefix string) error {
	n := 0
	var errs []error
	if c.TCP != nil {
		n++
		p := prefix + "TCP_CHECK."
		errs = append(errs, c.TCP.Timing.validate(p))
	}
	if c.HTTP != nil {
		n++
		p := prefix + "HTTP_GET."
		errs = append(errs, c.HTTP.Timing.validate(p))
		if len(c.HTTP.URLs) == 0 {
			errs = append(errs, fmt.Errorf("%surl: at least one url is required", p))
		}
		for i, u := range c.HTTP.URLs {
			up := fmt.Sprintf("%surl[%d].", p, i)
			if !strings.HasPrefix(u.Path, "/") {
				errs = append(errs, fmt.Errorf("%spath: %q must start with /", up, u.Path))
			}
			if u.StatusCode != 0 && (u.StatusCode < 100 || u.StatusCode > 599) {
				errs = append(errs, fmt.Errorf("%sstatus_code: %d is not an HTTP status", up, u.StatusCode))
			}
			if u.Digest != "" && !isMD5Hex(u.Digest) {
				errs = append(errs, fmt.Errorf("%sdigest: %q is not 32 hex digits (an MD5, as genhash prints)", up, u.Digest))
			}
		}
	}
	if c.Script != nil {
		n++
		p := prefix + "MISC_CHECK."
		errs = append(errs, c.Script.Timing.validate(p))
		if strings.TrimSpace(c.Script.Path) == "" {
			errs = append(errs, fmt.Errorf("%smisc_path: is required", p))
		}
		if c.Script.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%smisc_timeout: %v is negative", p, c.Script.Timeout))
		}
	}
	if n > 1 {
		errs = append(errs, fmt.Errorf("%sTCP_CHECK/HTTP_GET/MISC_CHECK: set only one checker, found %d", prefix, n))
	}
	return errors.Join(errs...)
}

func isMD5Hex(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
