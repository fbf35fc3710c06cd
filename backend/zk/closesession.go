package zk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hacoord/hacoord/internal/retry"
)

// ErrSessionGone is what CloseSession reports (wrapped) when no server knows the session: it has
// expired or been closed already, and there is nothing left to close.
var ErrSessionGone = errors.New("zk: session gone")

// CloseSession closes session id from outside the process that opened it, with its password, as
// that process would on a clean stop: the server deletes the session's ephemeral znodes (a
// candidate, the master record) at once and fires their watches, so the next candidate takes over
// without waiting for the session timeout. A fence guard does this for its dead daemon.
//
// servers is the ensemble as in Config.Servers (a chroot is ignored: closing a session names no
// path). Each server is tried in turn, each attempt bounded by attempt (0: 1s), and the rounds go on,
// pausing in between, until one server has closed the session (nil), one says it does not know the
// session (an error wrapping ErrSessionGone), or ctx is done (the last error).
//
// go-zookeeper cannot attach to a given session, so the two requests are written by hand
// (ZooKeeper's wire format: int32-length-framed jute records): a ConnectRequest naming the
// session, then a RequestHeader of type closeSession (-11).
func CloseSession(ctx context.Context, servers []string, id int64, passwd []byte, attempt time.Duration) error {
	addrs, _, err := parseServers(servers)
	if err != nil {
		return err
	}
	if attempt <= 0 {
		attempt = time.Second
	}
	return retry.Servers(ctx, addrs, func(a string) (bool, error) {
		err := closeSessionOn(ctx, a, id, passwd, attempt)
		return err == nil || errors.Is(err, ErrSessionGone), err
	})
}

// closeSessionOn closes session id on the server at addr.
func closeSessionOn(ctx context.Context, addr string, id int64, passwd []byte, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(cctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("zk: close session %#x on %s: %w", id, addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(cctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()

	be := binary.BigEndian
	req := be.AppendUint32(nil, 0)         // protocolVersion
	req = be.AppendUint64(req, 0)          // lastZxidSeen: 0 passes any server's check
	req = be.AppendUint32(req, 30000)      // timeOut: the session keeps its own
	req = be.AppendUint64(req, uint64(id)) // sessionId
	req = be.AppendUint32(req, uint32(len(passwd)))
	req = append(req, passwd...)
	if err := writeFrame(c, req); err != nil {
		return fmt.Errorf("zk: close session %#x on %s: connect: %w", id, addr, err)
	}
	resp, err := readFrame(c)
	if err != nil {
		return fmt.Errorf("zk: close session %#x on %s: connect response: %w", id, addr, err)
	}
	// ConnectResponse: protocolVersion, timeOut, sessionId, passwd. A server that does not know the
	// session (expired, or a wrong password) answers with timeOut 0 and another id, then hangs up.
	if len(resp) < 16 || int64(be.Uint64(resp[8:16])) != id || be.Uint32(resp[4:8]) == 0 {
		return fmt.Errorf("zk: close session %#x on %s: %w", id, addr, ErrSessionGone)
	}
	hdr := be.AppendUint32(nil, 1)                 // xid
	hdr = be.AppendUint32(hdr, uint32(0xfffffff5)) // type closeSession (-11)
	if err := writeFrame(c, hdr); err != nil {
		return fmt.Errorf("zk: close session %#x on %s: %w", id, addr, err)
	}
	// ReplyHeader (xid, zxid, err) once the close is committed, or the connection closed by then.
	rep, err := readFrame(c)
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("zk: close session %#x on %s: reply: %w", id, addr, err)
	case len(rep) >= 16 && be.Uint32(rep[12:16]) != 0:
		return fmt.Errorf("zk: close session %#x on %s: error %d", id, addr, int32(be.Uint32(rep[12:16])))
	}
	return nil
}

func writeFrame(w io.Writer, b []byte) error {
	_, err := w.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...))
	return err
}

func readFrame(r io.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", size)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(r, b)
	return b, err
}
