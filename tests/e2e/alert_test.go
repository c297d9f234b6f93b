package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// A server that refuses a client's SVID sends its TLS alert after the client has finished
// its side of the TLS 1.3 handshake, so the alert reaches the client on its first read. What
// net/http then returns depends on a race inside its transport: the read error (the alert),
// or the error of a write made after the read loop closed the connection ("use of closed
// network connection"; a loaded make test run saw this once in 570 cases). The suite's
// direct clients therefore keep the alert on the connection that read it, and do reads it
// from there when the returned error lost it. The alert is still the server's own mark: only
// a TLS record from the server can put it there.

// alertConn is a client TLS connection that remembers the first alert the server sent.
type alertConn struct {
	net.Conn
	mu    sync.Mutex
	alert string
}

func (c *alertConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if a := remoteAlert(err); a != "" {
		c.mu.Lock()
		if c.alert == "" {
			c.alert = a
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *alertConn) sentAlert() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alert
}

// remoteAlert is the alert a server sent, if err is one.
func remoteAlert(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return op.Err.Error()
	}
	return ""
}

// mtlsClient is an HTTP/1.1 client for cfg whose connections are alertConns.
func mtlsClient(cfg *tls.Config, timeout time.Duration) *http.Client {
	var dialer net.Dialer
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return &alertConn{Conn: tc}, nil
		},
	}}
}

// do sends req with client and classifies the answer; when the request failed without
// naming an alert, an alert one of its connections read is the answer.
func do(client *http.Client, req *http.Request) Observed {
	var (
		mu    sync.Mutex
		conns []*alertConn
	)
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if c, ok := info.Conn.(*alertConn); ok {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}}
	resp, err := client.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil && remoteAlert(err) == "" {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			if a := c.sentAlert(); a != "" {
				return classifyParts(0, "", nil, a, err)
			}
		}
	}
	return classify(resp, err)
}

// lostAlert answers every request the way net/http does when its read loop closed the
// connection after reading the server's alert: a local-close error, the alert only on the
// connection.
type lostAlert struct{ conn *alertConn }

func (l lostAlert) RoundTrip(req *http.Request) (*http.Response, error) {
	if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Conn: l.conn})
	}
	return nil, &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}
}
