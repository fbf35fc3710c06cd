package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hacoord/hacoord/election"
)

// GroupStatus is what `hacoord status --backend B --endpoints ...` prints with -o json: a group's
// state as its store holds it, read from any machine, no daemon needed. Fields are only ever added.
type GroupStatus struct {
	Backend   string   `json:"backend"`
	Group     string   `json:"group"`
	Endpoints []string `json:"endpoints"`
	// Master is the master record (nil: the group has no master now).
	Master *election.Record `json:"master"`
	// Candidates are the group's candidates in the store's order (the head first), then those in
	// maintenance.
	Candidates []StoreCandidate `json:"candidates"`
	// Transfer is the active transfer record, if any.
	Transfer *election.Transfer `json:"transfer,omitempty"`
}

// StoreCandidate is one candidate of GroupStatus: the candidate's published value, its place in
// the queue (1 is the head; 0 for a node in maintenance, which is not queued) and whether it is
// the node the master record names.
type StoreCandidate struct {
	election.Candidate
	Position int  `json:"position"`
	Master   bool `json:"master"`
}

// defaultStoreStatusTimeout bounds a store status read when --timeout is not given.
const defaultStoreStatusTimeout = 5 * time.Second

// storeStatusFlags are status's flags for reading a group from its store.
type storeStatusFlags struct {
	fv      flagValues
	group   *string // status's own --group
	output  string
	timeout time.Duration
}

// addStoreStatusFlags adds to status the store flags (--backend, --endpoints, the etcd TLS and
// auth flags, --zk-auth, --zk-session-timeout, the log flags), -o/--output and --timeout; group is
// status's --group, which names the group in the store too. A flag status already has is left to
// it (its value is read by name).
func addStoreStatusFlags(cmd *cobra.Command, group *string) *storeStatusFlags {
	f := &storeStatusFlags{fv: defaultFlagValues(), group: group}
	f.fv.daemon.Backend = "" // only a given --backend reads the store
	f.fv.daemon.Log.Level = "error"
	scratch := pflag.NewFlagSet("store", pflag.ContinueOnError)
	var unused string
	registerStoreFlags(scratch, &f.fv.daemon, &unused)
	fs := cmd.Flags()
	scratch.VisitAll(func(fl *pflag.Flag) {
		if fl.Name != "group" && fs.Lookup(fl.Name) == nil {
			fs.AddFlag(fl)
		}
	})
	if fs.Lookup("output") == nil {
		fs.StringVarP(&f.output, "output", "o", "table", "with --backend: table or json")
	}
	if fs.Lookup("timeout") == nil {
		fs.DurationVar(&f.timeout, "timeout", defaultStoreStatusTimeout, "with --backend: how long to wait for the store to answer")
	}
	return f
}

// requested reports whether the command line asks for the store's view (--backend or --endpoints).
func (f *storeStatusFlags) requested(cmd *cobra.Command) bool {
	fs := cmd.Flags()
	return fs.Changed("backend") || fs.Changed("endpoints")
}

// run reads the group from the store and prints it.
func (f *storeStatusFlags) run(cmd *cobra.Command, stdout, stderr io.Writer) error {
	fs := cmd.Flags()
	output, _ := fs.GetString("output")
	timeout, _ := fs.GetDuration("timeout")
	switch {
	case output != "table" && output != "json":
		return configErrorf("--output %q: want table or json", output)
	case timeout <= 0:
		return configErrorf("--timeout %v: must be positive", timeout)
	}
	s, err := load(fs, &f.fv, "")
	if err != nil {
		return err
	}
	backend, group := s.daemon.Backend, *f.group
	switch backend {
	case backendEtcd, backendZK:
	case "":
		return configErrorf("--backend: needed with --endpoints (etcd or zk)")
	default:
		return configErrorf("--backend %q: status from the store needs etcd or zk (VRRP keeps no group state anywhere)", backend)
	}
	if len(trimmed(s.daemon.Endpoints)) == 0 {
		return configErrorf("--endpoints: needed with --backend %s", backend)
	}
	log, err := newLogger(s.daemon.Log, stderr)
	if err != nil {
		return configError{err}
	}
	defer func() { _ = log.Sync() }()
	obs, err := newObserver(s, backend, group, log)
	if err != nil {
		return err
	}
	ls, err := newStoreLister(obs, backend)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	gs, err := readGroupStatus(ctx, backend, group, trimmed(s.daemon.Endpoints), obs, ls)
	if err != nil {
		return fmt.Errorf("status: group %q in the %s store at %s: %w", group, backend, strings.Join(trimmed(s.daemon.Endpoints), ","), err)
	}
	if output == "json" {
		b, err := json.MarshalIndent(gs, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return writeGroupTable(stdout, gs, time.Now())
}

// readGroupStatus reads the master record (the Observer's first report) and the candidates
// (the Lister) at once, until ctx is done: an error then says the store did not answer.
func readGroupStatus(ctx context.Context, backend, group string, endpoints []string, obs election.Observer, ls election.Lister) (GroupStatus, error) {
	gs := GroupStatus{Backend: backend, Group: group, Endpoints: endpoints, Candidates: []StoreCandidate{}}
	type listed struct {
		cands []election.Candidate
		tr    *election.Transfer
		err   error
	}
	lc := make(chan listed, 1)
	go func() {
		c, t, err := ls.Candidates(ctx)
		lc <- listed{c, t, err}
	}()
	octx, stop := context.WithCancel(ctx)
	defer stop()
	recs := make(chan election.Record, 1)
	oerr := make(chan error, 1)
	go func() { oerr <- obs.Observe(octx, recs) }()
	var rec election.Record
	select {
	case rec = <-recs:
		stop()
		<-oerr
	case err := <-oerr:
		if err == nil {
			err = ctx.Err()
		}
		<-lc
		return gs, storeTimeout(err, ctx, "reading the master record")
	case <-ctx.Done():
		<-oerr
		<-lc
		return gs, storeTimeout(ctx.Err(), ctx, "reading the master record")
	}
	l := <-lc
	if l.err != nil {
		return gs, storeTimeout(l.err, ctx, "listing the candidates")
	}
	if !rec.IsZero() {
		gs.Master = &rec
	}
	gs.Transfer = l.tr
	pos := 0
	for _, c := range l.cands {
		sc := StoreCandidate{Candidate: c, Master: gs.Master != nil && c.Node == gs.Master.Node && !c.Maintenance}
		if !c.Maintenance {
			pos++
			sc.Position = pos
		}
		gs.Candidates = append(gs.Candidates, sc)
	}
	return gs, nil
}

// storeTimeout words an error of a read that ran out of time as the store not answering.
func storeTimeout(err error, ctx context.Context, what string) error {
	if errors.Is(err, context.DeadlineExceeded) || (ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return fmt.Errorf("%s: the store did not answer in time (--timeout): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// writeGroupTable prints gs for a person.
func writeGroupTable(w io.Writer, gs GroupStatus, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "group %s (%s at %s)\n", gs.Group, gs.Backend, strings.Join(gs.Endpoints, ","))
	if gs.Master == nil {
		b.WriteString("master: none\n")
	} else {
		m := gs.Master
		addr := "-"
		if m.Address.IsValid() {
			addr = m.Address.String()
		}
		since := "-"
		if !m.Since.IsZero() {
			since = fmt.Sprintf("%s (%s ago)", m.Since.UTC().Format(time.RFC3339), now.Sub(m.Since).Round(time.Second))
		}
		fmt.Fprintf(&b, "master: %s  address %s  term %d  since %s\n", m.Node, addr, m.Term, since)
	}
	if t := gs.Transfer; t != nil && t.Active(now) {
		fmt.Fprintf(&b, "transfer: %s -> %s until %s\n", t.From, t.To, t.Until.UTC().Format(time.RFC3339))
	}
	if len(gs.Candidates) == 0 {
		b.WriteString("candidates: none\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tNODE\tPRIORITY\tHEALTH\tMAINTENANCE\tADDRESS\tQUEUED SINCE\t")
	for _, c := range gs.Candidates {
		pos := "-"
		if c.Position > 0 {
			pos = fmt.Sprint(c.Position)
		}
		node := c.Node
		if c.Master {
			node += " (master)"
		}
		health := "-"
		if c.Healthy != nil {
			health = map[bool]string{true: "healthy", false: "failing"}[*c.Healthy]
		}
		maint := map[bool]string{true: "yes", false: "no"}[c.Maintenance]
		addr := "-"
		if c.Address.IsValid() {
			addr = c.Address.String()
		}
		since := "-"
		if !c.Since.IsZero() {
			since = c.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", pos, node, c.Priority, health, maint, addr, since)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// newStoreLister returns the election.Lister of backend for group: the backend's Observer (etcd and
// zk read the queue, the maintenance records and the transfer record).
func newStoreLister(obs election.Observer, backend string) (election.Lister, error) {
	l, ok := obs.(election.Lister)
	if !ok {
		return nil, fmt.Errorf("status: the %s backend cannot list its candidates", backend)
	}
	return l, nil
}
