package check

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// NoWeight is the Status.Weight of a checker that has not reported a dynamic weight.
const NoWeight = -1

// Status is a Checker's verdict on its target.
type Status struct {
	// Name is the Checker's name, so many checkers can share one channel.
	Name string
	Up   bool
	// Weight is the last dynamic weight a MISC_CHECK with misc_dynamic reported, or NoWeight.
	Weight int
	// Err is why the last probe failed, nil after a passed probe.
	Err error
}

// A Prober makes one attempt at checking a target. It returns the dynamic weight (or NoWeight) and
// a nil error when the target passed. It must return when ctx is done.
type Prober interface {
	Probe(ctx context.Context) (weight int, err error)
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context) (int, error)

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context) (int, error) { return f(ctx) }

// Checker probes one target on its schedule. New allocates; Run probes until its context ends. A
// Checker is used by one Run at a time.
type Checker struct {
	name   string
	kind   string
	timing Timing
	prober Prober
	log    *zap.Logger
}

// New returns a Checker for cfg probing target (the real server's address; connect_ip/connect_port
// override it). name identifies it in Status; log should carry the target. Zero timing fields take DefaultTiming's.
func New(name string, cfg Config, target netip.AddrPort, log *zap.Logger) (*Checker, error) {
	if err := cfg.Validate(""); err != nil {
		return nil, fmt.Errorf("check %s: %w", name, err)
	}
	t := cfg.Timing(DefaultTiming())
	var p Prober
	switch {
	case cfg.TCP != nil:
		p = &tcpProber{addr: override(target, cfg.TCP.ConnectIP, cfg.TCP.ConnectPort), timeout: t.ConnectTimeout}
	case cfg.HTTP != nil:
		p = newHTTPProber(override(target, cfg.HTTP.ConnectIP, cfg.HTTP.ConnectPort), *cfg.HTTP, t.ConnectTimeout)
	case cfg.Script != nil:
		timeout := cfg.Script.Timeout
		if timeout == 0 {
			timeout = t.ConnectTimeout
		}
		p = &scriptProber{args: strings.Fields(cfg.Script.Path), timeout: timeout, dynamic: cfg.Script.Dynamic}
	default:
		return nil, fmt.Errorf("check %s: no TCP_CHECK, HTTP_GET or MISC_CHECK configured", name)
	}
	return NewWithProber(name, cfg.Kind(), t, p, log), nil
}

// NewWithProber returns a Checker running p on timing t (zero fields as DefaultTiming). kind names the
// check in logs; log should already carry the target (the reconciler adds `service` and
// `real-server`).
func NewWithProber(name, kind string, t Timing, p Prober, log *zap.Logger) *Checker {
	if log == nil {
		log = zap.NewNop()
	}
	return &Checker{
		name:   name,
		kind:   kind,
		timing: t.WithDefaults(DefaultTiming()),
		prober: p,
		log:    log.With(zap.String("check", kind)),
	}
}

func override(target netip.AddrPort, ip netip.Addr, port uint16) netip.AddrPort {
	a, p := target.Addr(), target.Port()
	if ip.IsValid() {
		a = ip
	}
	if port != 0 {
		p = port
	}
	return netip.AddrPortFrom(a, p)
}

// Name returns the name given to New.
func (c *Checker) Name() string { return c.name }

// Initial returns the Status the target has before the first probe: up, unless alpha is set.
func (c *Checker) Initial() Status {
	return Status{Name: c.name, Up: !c.timing.Alpha, Weight: NoWeight}
}

// Probe makes one probe: up to 1+retry attempts, delay_before_retry apart. It returns the dynamic
// weight and nil when an attempt passed, or the last attempt's error.
func (c *Checker) Probe(ctx context.Context) (int, error) {
	var err error
	retries := 0
	if c.timing.Retry != nil {
		retries = max(*c.timing.Retry, 0)
	}
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			if !wait(ctx, c.timing.DelayBeforeRetry) {
				return NoWeight, ctx.Err()
			}
		}
		var w int
		w, err = c.prober.Probe(ctx)
		if err == nil {
			return w, nil
		}
		if ctx.Err() != nil {
			return NoWeight, ctx.Err()
		}
		c.log.Debug("attempt failed", zap.Int("attempt", attempt+1), zap.Error(err))
	}
	return NoWeight, err
}

// Run probes every delay_loop until ctx is done and sends a Status on out whenever the target goes
// up or down (after rise/fall consecutive probes) or, while up, reports a new dynamic weight. The
// starting state is Initial() and is not sent. Run returns nil when ctx ends; every send selects on
// ctx.Done(), so a reader that stops reading does not block shutdown.
func (c *Checker) Run(ctx context.Context, out chan<- Status) error {
	cur := c.Initial()
	passed, failed := 0, 0
	for {
		w, err := c.Probe(ctx)
		if ctx.Err() != nil {
			return nil
		}
		next := cur
		if err == nil {
			passed, failed = passed+1, 0
			if w != NoWeight {
				next.Weight = w
			}
			if !cur.Up && passed >= c.timing.Rise {
				next.Up = true
			}
		} else {
			passed, failed = 0, failed+1
			if cur.Up && failed >= c.timing.Fall {
				next.Up = false
			}
		}
		next.Err = err
		if next.Up != cur.Up || (next.Up && next.Weight != cur.Weight) {
			if next.Up != cur.Up {
				if next.Up {
					c.log.Info("up", zap.Int("passed", passed))
				} else {
					c.log.Warn("down", zap.Int("failed", failed), zap.Error(err))
				}
			}
			select {
			case out <- next:
			case <-ctx.Done():
				return nil
			}
		}
		cur = next
		if !wait(ctx, c.timing.Interval) {
			return nil
		}
	}
}

// wait blocks for d or until ctx is done; it reports whether d elapsed.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type tcpProber struct {
	addr    netip.AddrPort
	timeout time.Duration
}

func (p *tcpProber) Probe(ctx context.Context) (int, error) {
	d := net.Dialer{Timeout: p.timeout}
	conn, err := d.DialContext(ctx, "tcp", p.addr.String())
	if err != nil {
		return NoWeight, fmt.Errorf("tcp connect %s: %w", p.addr, err)
	}
	_ = conn.Close()
	return NoWeight, nil
}

type httpProber struct {
	addr    netip.AddrPort
	cfg     HTTP
	timeout time.Duration
	client  *http.Client
}

func newHTTPProber(addr netip.AddrPort, cfg HTTP, timeout time.Duration) *httpProber {
	return &httpProber{
		addr:    addr,
		cfg:     cfg,
		timeout: timeout,
		client: &http.Client{
			// One connection per check, as keepalived makes; never reuse one a server may have dropped.
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			// A redirect is an answer to judge, not to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (p *httpProber) Probe(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	for _, u := range p.cfg.URLs {
		if err := p.get(ctx, u); err != nil {
			return NoWeight, err
		}
	}
	return NoWeight, nil
}

func (p *httpProber) get(ctx context.Context, u URL) error {
	url := "http://" + p.addr.String() + u.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("http get %s: %w", url, err)
	}
	if p.cfg.VirtualHost != "" {
		req.Host = p.cfg.VirtualHost
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("http get %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case u.StatusCode != 0 && resp.StatusCode != u.StatusCode:
		return fmt.Errorf("http get %s: status %d, want %d", url, resp.StatusCode, u.StatusCode)
	case u.StatusCode == 0 && (resp.StatusCode < 200 || resp.StatusCode > 299):
		return fmt.Errorf("http get %s: status %d, want 2xx", url, resp.StatusCode)
	}
	if u.Digest == "" {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	h := md5.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return fmt.Errorf("http get %s: read body: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, u.Digest) {
		return fmt.Errorf("http get %s: body digest %s, want %s", url, got, strings.ToLower(u.Digest))
	}
	return nil
}

// Digest returns the hex MD5 of body, the value an HTTP_GET url digest expects (keepalived's genhash).
func Digest(body []byte) string {
	s := md5.Sum(body)
	return hex.EncodeToString(s[:])
}

type scriptProber struct {
	args    []string
	timeout time.Duration
	dynamic bool
}

// ExitError is the error of a MISC_CHECK whose program exited with a status that means down.
type ExitError struct {
	Program string
	Status  int
}

func (e *ExitError) Error() string {
	return "misc_check " + e.Program + ": exit status " + strconv.Itoa(e.Status)
}

func (p *scriptProber) Probe(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.args[0], p.args[1:]...)
	// Its own process group, so a timeout kills what the script started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err == nil {
		return NoWeight, nil
	}
	if ctx.Err() != nil {
		return NoWeight, fmt.Errorf("misc_check %s: timed out after %v", p.args[0], p.timeout)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() < 0 {
		return NoWeight, fmt.Errorf("misc_check %s: %w", p.args[0], err)
	}
	code := ee.ExitCode()
	if p.dynamic && code >= 2 {
		// misc_dynamic: 2..255 is success with weight status-2 (keepalived's documented mapping).
		return code - 2, nil
	}
	return NoWeight, &ExitError{Program: p.args[0], Status: code}
}
