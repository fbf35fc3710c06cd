package etcdgw

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// maxAnswer bounds the answer body read (the gateway's answers are a few hundred bytes).
const maxAnswer = 1 << 20

// answer is an HTTP answer: its status code, status line text ("404 Not Found") and body.
type answer struct {
	code   int
	status string
	body   []byte
}

// postJSON sends one HTTP/1.1 POST of the JSON body to rawURL (http:// or https://, through tc)
// on a connection of its own, closed afterwards, with authorization as the Authorization header
// when not empty, and reads the answer. ctx bounds the dial, the TLS handshake and the exchange.
func postJSON(ctx context.Context, rawURL string, tc *tls.Config, authorization, body string) (*answer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Hostname() == "" || u.User != nil {
		return nil, fmt.Errorf("url %q: want scheme://host[:port]/path", rawURL)
	}
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return nil, fmt.Errorf("url %q: scheme %q, want http or https", rawURL, u.Scheme)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// ctx ending closes the connection, which ends a blocked read or write at once; the deadline
	// does the same for a ctx with a deadline even if the AfterFunc goroutine is slow to run.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if u.Scheme == "https" {
		var cfg *tls.Config
		if tc != nil {
			cfg = tc.Clone()
		} else {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname() // as net/http does
		}
		cfg.NextProtos = []string{"http/1.1"}
		tconn := tls.Client(conn, cfg)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return nil, ctxErr(ctx, err)
		}
		conn = tconn
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	if strings.ContainsAny(authorization, "\r\n") {
		return nil, errors.New("authorization token holds a line break")
	}
	var req strings.Builder
	req.WriteString("POST " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: hacoord\r\n")
	req.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n")
	if authorization != "" {
		req.WriteString("Authorization: " + authorization + "\r\n")
	}
	req.WriteString("\r\n")
	req.WriteString(body)
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return nil, ctxErr(ctx, err)
	}
	a, err := readAnswer(bufio.NewReader(conn))
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	return a, nil
}

// ctxErr names ctx's end as the cause when it closed the connection under err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// readAnswer reads an HTTP/1.x answer: the status line, the headers, and a body framed by
// Content-Length, chunked, or (Connection: close) by the end of the stream. 1xx answers before the
// final one are skipped.
func readAnswer(r *bufio.Reader) (*answer, error) {
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, fmt.Errorf("reading the answer's status line: %w", err)
		}
		proto, status, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
			return nil, fmt.Errorf("malformed status line %q", line)
		}
		codeText, _, _ := strings.Cut(status, " ")
		code, err := strconv.Atoi(codeText)
		if err != nil || code < 100 || code > 999 {
			return nil, fmt.Errorf("malformed status line %q", line)
		}
		length, chunked := int64(-1), false
		for {
			h, err := readLine(r)
			if err != nil {
				return nil, fmt.Errorf("reading the answer's headers: %w", err)
			}
			if h == "" {
				break
			}
			name, value, ok := strings.Cut(h, ":")
			if !ok {
				return nil, fmt.Errorf("malformed header line %q", h)
			}
			value = strings.TrimSpace(value)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "content-length":
				if length, err = strconv.ParseInt(value, 10, 64); err != nil || length < 0 {
					return nil, fmt.Errorf("malformed Content-Length %q", value)
				}
			case "transfer-encoding":
				chunked = strings.EqualFold(value, "chunked")
				if !chunked {
					return nil, fmt.Errorf("unsupported Transfer-Encoding %q", value)
				}
			}
		}
		if code < 200 {
			continue // 100 Continue and the like: the final answer follows
		}
		a := &answer{code: code, status: status}
		switch {
		case chunked:
			a.body, err = readChunked(r)
		case length >= 0:
			if length > maxAnswer {
				return nil, fmt.Errorf("answer of %d bytes: too long", length)
			}
			a.body = make([]byte, length)
			_, err = io.ReadFull(r, a.body)
		default:
			a.body, err = io.ReadAll(io.LimitReader(r, maxAnswer))
		}
		if err != nil {
			return nil, fmt.Errorf("reading the answer's body: %w", err)
		}
		return a, nil
	}
}

// readChunked reads a chunked body (and its trailers), at most maxAnswer bytes.
func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		sizeText, _, _ := strings.Cut(line, ";") // chunk extensions are ignored
		size, err := strconv.ParseInt(strings.TrimSpace(sizeText), 16, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("malformed chunk size %q", line)
		}
		if size == 0 {
			for { // trailers, up to the empty line
				t, err := readLine(r)
				if err != nil {
					return nil, err
				}
				if t == "" {
					return body, nil
				}
			}
		}
		if int64(len(body))+size > maxAnswer {
			return nil, errors.New("chunked answer too long")
		}
		n := len(body)
		body = append(body, make([]byte, size)...)
		if _, err := io.ReadFull(r, body[n:]); err != nil {
			return nil, err
		}
		if crlf, err := readLine(r); err != nil || crlf != "" {
			return nil, fmt.Errorf("chunk not followed by CRLF: %q, %v", crlf, err)
		}
	}
}

// readLine reads one line without its CRLF (or LF), at most 64 KiB.
func readLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		part, isPrefix, err := r.ReadLine()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		line = append(line, part...)
		if len(line) > 64<<10 {
			return "", errors.New("line too long")
		}
		if !isPrefix {
			return string(line), nil
		}
	}
}
