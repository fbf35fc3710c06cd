package etcd

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// renewer sends the keepalives of one lease over one long-lived LeaseKeepAlive stream, where
// clientv3's KeepAliveOnce opens (and resets) a stream per renewal: HTTP/2 headers, a reset and a
// window update each time, which is most of an idle daemon's CPU. It keeps at most one keepalive
// outstanding, so every answer on the stream is the answer to the keepalive just sent, and the
// caller's send time stays the anchor of the deadline (see keepalive). A stream that breaks, does
// not answer within the timeout, or belongs to an endpoint c has moved away from, is closed; the
// next renewal opens another on c's current endpoint.
//
// Only the keepalive loop uses a renewer; Close it when the loop returns.
type renewer struct {
	c     *conn
	id    clientv3.LeaseID
	pause time.Duration // between a broken stream and the next
	s     *kaStream     // nil: none open
	// rev is the store revision in the header of the last answer (the answering member's), 0
	// before the first.
	rev int64
}

// kaStream is one open LeaseKeepAlive stream and its reader.
type kaStream struct {
	ep     string
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc // ends the stream (and its reader)
	unhook func() bool        // stops ending it at the end of its epoch
	resps  chan kaResult      // the reader's: one per answer, then its error
	wg     sync.WaitGroup     // the reader
}

type kaResult struct {
	resp *pb.LeaseKeepAliveResponse
	err  error
}

// renew sends one keepalive and waits for its answer, at most timeout in all, and returns the TTL
// the store granted. Like KeepAliveOnce, it tries again on a new stream when the stream breaks
// (unavailable: a member stopped, a connection broke) within the timeout, and returns
// rpctypes.ErrLeaseNotFound when the store answers that the lease is gone (TTL <= 0). A failure
// for want of a working member moves c on (see conn.failed), as c.do does.
func (r *renewer) renew(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ep, ttl, err := r.once(rctx)
		switch {
		case err == nil:
			return ttl, nil
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			return 0, err
		}
		r.Close()
		switch {
		case ctx.Err() != nil:
			return 0, err // the caller's end, no member's fault
		case !halts(err) && sleep(rctx, r.pause):
			continue // a broken stream: another one at once, as KeepAliveOnce does
		case rctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded):
			err = errors.Join(err, context.DeadlineExceeded) // timed out trying again
		}
		r.c.failed(ep, err)
		return 0, err
	}
}

// halts reports whether a broken stream's error is one that trying again does not cure: as
// clientv3's isHaltErr, anything but unavailable and internal; and not a stream that ended or was
// cancelled when c moved on (its epoch ended).
func halts(err error) bool {
	st, ok := status.FromError(err)
	if !ok {
		return !errors.Is(err, errStreamEnded)
	}
	switch st.Code() {
	case codes.Unavailable, codes.Internal, codes.Canceled:
		return false
	}
	return true
}

// errStreamEnded is a stream that ended without an error (the server closed it): try again.
var errStreamEnded = errors.New("etcd: lease keepalive stream ended")

// once sends one keepalive on the open stream (opening one on c's current endpoint first if
// needed) and waits for its answer until ctx ends. It returns the endpoint it used.
func (r *renewer) once(ctx context.Context) (string, time.Duration, error) {
	ep, epoch := r.c.current()
	if r.s != nil && r.s.ep != ep {
		r.Close() // c moved on: so does the stream
	}
	if r.s == nil {
		s, err := r.open(ctx, ep, epoch)
		if err != nil {
			return ep, 0, clientv3.ContextError(ctx, err)
		}
		r.s = s
	}
	// A broken stream fails Send with io.EOF; its reader has the error.
	if err := r.s.stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(r.id)}); err != nil && !errors.Is(err, io.EOF) {
		return ep, 0, clientv3.ContextError(ctx, err)
	}
	select {
	case <-ctx.Done():
		return ep, 0, ctx.Err()
	case res := <-r.s.resps:
		switch {
		case res.err != nil:
			return ep, 0, clientv3.ContextError(ctx, res.err)
		case res.resp.TTL <= 0:
			return ep, 0, rpctypes.ErrLeaseNotFound
		}
		if h := res.resp.GetHeader(); h != nil {
			r.rev = h.Revision
		}
		return ep, time.Duration(res.resp.TTL) * time.Second, nil
	}
}

// open opens a stream to ep, which lasts until Close or the end of epoch (c moved on); opening
// waits for a connection until ctx ends.
func (r *renewer) open(ctx context.Context, ep string, epoch context.Context) (*kaStream, error) {
	sctx, cancel := context.WithCancel(context.Background())
	stopOpen := context.AfterFunc(ctx, cancel) // only while opening
	stream, err := pb.NewLeaseClient(r.c.cli.ActiveConnection()).LeaseKeepAlive(sctx, grpc.WaitForReady(true))
	if !stopOpen() {
		err = errors.Join(err, ctx.Err()) // ctx ended while opening: the stream is cancelled
	}
	if err != nil {
		cancel()
		return nil, err
	}
	s := &kaStream{ep: ep, stream: stream, cancel: cancel, unhook: context.AfterFunc(epoch, cancel),
		resps: make(chan kaResult, 1)}
	s.wg.Go(func() {
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				err = errStreamEnded
			}
			select {
			case s.resps <- kaResult{resp, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	return s, nil
}

// Close closes the open stream, if any, and waits for its reader. Idempotent.
func (r *renewer) Close() {
	if r.s == nil {
		return
	}
	r.s.unhook()
	r.s.cancel()
	r.s.wg.Wait()
	r.s = nil
}
