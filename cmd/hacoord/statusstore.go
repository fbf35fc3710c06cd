package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hacoord/hacoord/backend/etcd"
	"github.com/hacoord/hacoord/backend/zk"
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
	ls, err := newStoreLister(s, backend, group, obs)
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

// newStoreLister returns the election.Lister of backend for group: the backend's Observer where it
// is one (it reads the maintenance and transfer records too), else a reader of the queue alone.
func newStoreLister(s settings, backend, group string, obs election.Observer) (election.Lister, error) {
	if l, ok := obs.(election.Lister); ok {
		return l, nil
	}
	b := &planner{s: s, seen: map[string]bool{}}
	tlsc := b.etcdTLS()
	if len(b.errs) > 0 {
		return nil, configError{errors.Join(b.errs...)}
	}
	switch backend {
	case backendEtcd:
		return &etcdQueueLister{cfg: etcdConfig(s.daemon, group, election.Record{}, tlsc)}, nil
	default:
		return &zkQueueLister{cfg: zkConfig(s.daemon, group, election.Record{})}, nil
	}
}

// etcdQueueLister reads an etcd group's queue itself: the values under the election prefix in
// create-revision order (concurrency.Election's layout), each parsed with ParseCandidate.
type etcdQueueLister struct{ cfg etcd.Config }

func (l *etcdQueueLister) Candidates(ctx context.Context) ([]election.Candidate, *election.Transfer, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: l.cfg.Endpoints, TLS: l.cfg.TLS, Username: l.cfg.Username, Password: l.cfg.Password,
		DialTimeout: l.cfg.DialTimeout, Context: ctx, Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: connect: %w", err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, etcd.ElectionPrefix(l.cfg.Group)+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, nil, fmt.Errorf("etcd: read %s/: %w", etcd.ElectionPrefix(l.cfg.Group), err)
	}
	var out []election.Candidate
	for _, kv := range resp.Kvs {
		if c, err := election.ParseCandidate(kv.Value); err == nil {
			out = append(out, c)
		}
	}
	return out, nil, nil
}

// zkQueueLister reads a ZooKeeper group's queue itself: the children of the election znode in
// sequence order, each parsed with ParseCandidate.
type zkQueueLister struct{ cfg zk.Config }

func (l *zkQueueLister) Candidates(ctx context.Context) ([]election.Candidate, *election.Transfer, error) {
	servers, chroot := splitChroot(l.cfg.Servers)
	timeout := cmp.Or(l.cfg.SessionTimeout, 4*time.Second)
	conn, events, err := gozk.Connect(servers, timeout, gozk.WithLogger(nopZKLogger{}))
	if err != nil {
		return nil, nil, fmt.Errorf("zk: connect: %w", err)
	}
	defer conn.Close()
	for connected := false; !connected; {
		select {
		case ev := <-events:
			if ev.State == gozk.StateHasSession {
				connected = true
			}
			if ev.State == gozk.StateAuthFailed {
				return nil, nil, errors.New("zk: authentication failed")
			}
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("zk: no session with %v: %w", servers, ctx.Err())
		}
	}
	if a := l.cfg.Auth; a != "" {
		if err := conn.AddAuth("digest", []byte(a)); err != nil {
			return nil, nil, fmt.Errorf("zk: --zk-auth: %w", err)
		}
	}
	dir := chroot + "/hacoord/" + l.cfg.Group + "/election"
	kids, _, err := conn.Children(dir)
	if errors.Is(err, gozk.ErrNoNode) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("zk: list %s: %w", dir, err)
	}
	slices.SortFunc(kids, func(a, b string) int { return cmp.Compare(zkSeq(a), zkSeq(b)) })
	var out []election.Candidate
	for _, k := range kids {
		data, _, err := conn.Get(dir + "/" + k)
		if err != nil {
			continue // gone meanwhile
		}
		if c, err := election.ParseCandidate(data); err == nil {
			out = append(out, c)
		}
	}
	return out, nil, nil
}

// zkSeq is the sequence suffix of a sequential znode's name (its last 10 characters).
func zkSeq(name string) string {
	if len(name) < 10 {
		return name
	}
	return name[len(name)-10:]
}

// splitChroot takes the chroot off a ZooKeeper connection string's last server.
func splitChroot(servers []string) ([]string, string) {
	out := slices.Clone(servers)
	if n := len(out); n > 0 {
		if i := strings.IndexByte(out[n-1], '/'); i >= 0 {
			chroot := strings.TrimSuffix(out[n-1][i:], "/")
			out[n-1] = out[n-1][:i]
			return out, chroot
		}
	}
	return out, ""
}

type nopZKLogger struct{}

func (nopZKLogger) Printf(string, ...any) {}
