package netnstest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Get fetches path over HTTP/1.0 from addr as seen from inside the namespace (the connection is
// opened on a thread switched into it: loopback there is the namespace's own) and returns the
// status and body. It gives up after 2s to connect and 5s in all.
func (ns *NS) Get(addr, path string) (code int, body string, err error) {
	err = ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		code, body = resp.StatusCode, string(b)
		return err
	})
	return code, body, err
}
