package composetest

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// TimeLayout is the lab client's timestamp: UTC with milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Call is one call the lab's client made to the VIP. The client prints it as one line,
//
//	2026-12-01T20:01:02.345Z ok       2ms web1 via node2
//	2026-12-01T20:01:02.545Z error  500ms dial tcp 172.31.77.100:8080: i/o timeout
//
// (start time, outcome, duration, then the reply or the error), and the lab reads these lines back
// from `docker logs`. A reply names the web backend that answered and the node whose proxy
// forwarded the call, the node holding the VIP.
type Call struct {
	Start    time.Time
	Duration time.Duration
	Reply    string // "web1 via node2"; empty when the call failed
	Err      string // why the call failed; empty when it was answered
}

// OK reports whether the call was answered.
func (c Call) OK() bool { return c.Err == "" }

// End is when the call finished.
func (c Call) End() time.Time { return c.Start.Add(c.Duration) }

// Node is the node that forwarded an answered call ("node2" in "web1 via node2"), or "".
func (c Call) Node() string {
	_, node, ok := strings.Cut(c.Reply, " via ")
	if !ok {
		return ""
	}
	return node
}

// Backend is the web backend that answered ("web1" in "web1 via node2"), or "".
func (c Call) Backend() string {
	backend, _, _ := strings.Cut(c.Reply, " via ")
	return backend
}

// String formats c as the client prints it.
func (c Call) String() string {
	outcome, text := "ok", c.Reply
	if !c.OK() {
		outcome, text = "error", c.Err
	}
	return fmt.Sprintf("%s %-5s %5dms %s", c.Start.UTC().Format(TimeLayout), outcome, c.Duration.Milliseconds(), text)
}

// ParseCall parses a line printed by the client.
func ParseCall(line string) (Call, error) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return Call{}, fmt.Errorf("composetest: call %q: want time, outcome, duration, text", line)
	}
	start, err := time.Parse(TimeLayout, f[0])
	if err != nil {
		return Call{}, fmt.Errorf("composetest: call %q: %w", line, err)
	}
	d, err := time.ParseDuration(f[2])
	if err != nil {
		return Call{}, fmt.Errorf("composetest: call %q: %w", line, err)
	}
	text := strings.Join(f[3:], " ")
	c := Call{Start: start, Duration: d}
	switch f[1] {
	case "ok":
		c.Reply = text
	case "error":
		c.Err = text
	default:
		return Call{}, fmt.Errorf("composetest: call %q: outcome %q: want ok or error", line, f[1])
	}
	return c, nil
}

// ParseCalls reads the calls in r (other lines are skipped) and returns them by start time.
func ParseCalls(r io.Reader) ([]Call, error) {
	var calls []Call
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if c, err := ParseCall(sc.Text()); err == nil {
			calls = append(calls, c)
		}
	}
	sort.SliceStable(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
	return calls, sc.Err()
}
