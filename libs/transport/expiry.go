package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/ztbank/ztbank/libs/problem"
)

// TLS checks certificate validity only during the handshake, so a kept-alive mTLS
// connection outlives both SVIDs that opened it. Zero trust fails closed instead (ADR
// 0989): a connection whose peer certificate, or whose own SVID, has expired carries no
// new request. FailClosed enforces it on the serving side, Client's expiry guard on the
// calling side.

// ErrExpired is the calling side's refusal: the workload's own SVID, or the certificate a
// pooled connection negotiated, has passed its NotAfter.
var ErrExpired = errors.New("certificate expired")

// FailClosed returns middleware for an mTLS listener that refuses, with 503 problem+json
// and the connection closed, every request that arrives once the peer certificate chain
// presented on its connection has expired, or once the server's own SVID (own returns its
// NotAfter, the zero time when there is none) has expired. It is on every request's path,
// so it only compares times it already has: it takes no lock and allocates nothing.
func FailClosed(own func() time.Time) func(http.Handler) http.Handler {
	if benchOff {
		return func(next http.Handler) http.Handler { return next }
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			now := time.Now()
			if !now.Before(own()) {
				refuseExpired(w, r, "this service's own SVID has expired; it cannot prove its identity until the SPIRE agent renews it")
				return
			}
			if r.TLS != nil {
				for _, c := range r.TLS.PeerCertificates {
					if !now.Before(c.NotAfter) {
						refuseExpired(w, r, "the client certificate presented on this connection has expired; reconnect with a current SVID")
						return
					}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func refuseExpired(w http.ResponseWriter, r *http.Request, detail string) {
	slog.WarnContext(r.Context(), "request on an expired mTLS identity refused", "detail", detail)
	// Connection: close ends an HTTP/1.1 connection after this answer and makes Go's
	// HTTP/2 server send GOAWAY, so the client's next request needs a new handshake.
	w.Header().Set("Connection", "close")
	problem.Write(w, r, problem.Refuse(problem.TypeIdentityExpired, problem.ErrUnavailable, detail, nil))
}

// expiryGuard is Client's round tripper: it keeps pooled connections from outliving the
// certificates they were opened with. Each connection it dials records the earliest
// NotAfter of the client SVID it presented and the server chain it verified; a request
// that is handed such a connection after that time closes it and is sent on a new one.
// Shortly before that time (retireMargin) a connection is retired gently instead: idle it
// is closed, busy it serves the request in hand as its last (Connection: close, which
// HTTP/2 honours by taking no new streams), so steady rotation cuts no request in flight.
// When the workload's own SVID rotates, idle connections are closed so the next requests
// handshake with the new SVID; when it has expired, requests fail with ErrExpired rather
// than go out with an identity the workload can no longer prove.
type expiryGuard struct {
	t   *http.Transport
	src Source
	// lastOwn is the own SVID's leaf at the previous request, to see rotations.
	lastOwn atomic.Pointer[x509.Certificate]
	// sweepAt is the earliest retirement (Unix ns) of a connection dialled since the last sweep
	// of idle connections, 0 for none.
	sweepAt atomic.Int64
	// sessions are the TLS sessions new connections resume (ADR 1001).
	sessions *sessions
}

// guardedConn is the network connection under a dialled *tls.Conn; the transport hands the
// *tls.Conn back in httptrace's GotConn, and NetConn leads here.
type guardedConn struct {
	net.Conn
	own     time.Time         // NotAfter of the client SVID presented in the handshake
	ownLeaf *x509.Certificate // that SVID (from the session when the handshake resumed)
	expiry  time.Time         // earliest NotAfter of own and the server's chain; set before use
	retire  time.Time         // when to stop handing the connection new requests; set before use
	onClose func()            // releases dials waiting for this connection's session ticket
}

func (c *guardedConn) Close() error {
	if c.onClose != nil {
		c.onClose()
	}
	return c.Conn.Close()
}

// maxRetireMargin caps how long before its expiry a connection is retired; a quarter of
// the connection's life is the margin when that is shorter, so a connection dialled late in
// an agent outage still serves most of its remaining life.
const maxRetireMargin = 30 * time.Second

func retireMargin(life time.Duration) time.Duration { return min(maxRetireMargin, life/4) }

func newExpiryGuard(t *http.Transport, src Source, cfg *tls.Config, dialer *net.Dialer, handshakeTimeout time.Duration) *expiryGuard {
	g := &expiryGuard{t: t, src: src, sessions: newSessions()}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return g.dial(ctx, network, addr, cfg, dialer, handshakeTimeout)
	}
	return g
}

func (g *expiryGuard) dial(ctx context.Context, network, addr string, base *tls.Config, dialer *net.Dialer, timeout time.Duration) (net.Conn, error) {
	// The session this dial resumes, or the full handshake it leads; waiting for another
	// dial's ticket is bounded by half the handshake timeout, the handshake keeps its own.
	var (
		resume *offered
		lead   *session
	)
	if svid, err := g.src.GetX509SVID(); err == nil && len(svid.Certificates) > 0 {
		wctx, cancel := context.WithTimeout(ctx, timeout/2)
		resume, lead = g.sessions.take(wctx, addr, svid.Certificates[0])
		cancel()
	}
	raw, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		if lead != nil {
			g.sessions.giveUp(addr, lead)
		}
		return nil, err
	}
	gc := &guardedConn{Conn: raw}
	cfg := base.Clone()
	cache := &connSessions{s: g.sessions, addr: addr, gc: gc}
	if resume != nil {
		cache.offer = resume.state
	}
	cfg.ClientSessionCache = cache
	if cfg.ServerName == "" {
		// SNI only: go-spiffe verifies the server's SPIFFE ID, not a host name.
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	if len(cfg.NextProtos) == 0 {
		// What the transport would offer itself: HTTP/2 only when it is set up to speak it.
		cfg.NextProtos = []string{"http/1.1"}
		if g.t.ForceAttemptHTTP2 {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
	}
	getCert := cfg.GetClientCertificate
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c, err := getCert(cri)
		if err != nil || c == nil || len(c.Certificate) == 0 {
			return c, err
		}
		leaf := c.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("own SVID: %w", err)
			}
		}
		gc.own, gc.ownLeaf = leaf.NotAfter, leaf
		return c, nil
	}
	tc := tls.Client(gc, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		if lead != nil {
			g.sessions.giveUp(addr, lead)
		}
		return nil, err
	}
	resumed := tc.ConnectionState().DidResume && resume != nil
	if resumed {
		// No client certificate was sent: the server holds the one in the session.
		gc.own, gc.ownLeaf = resume.own.NotAfter, resume.own
	}
	if lead != nil {
		gc.onClose = func() { g.sessions.giveUp(addr, lead) }
	}
	gc.expiry = gc.own
	for _, c := range tc.ConnectionState().PeerCertificates {
		if gc.expiry.IsZero() || c.NotAfter.Before(gc.expiry) {
			gc.expiry = c.NotAfter
		}
	}
	gc.retire = gc.expiry.Add(-retireMargin(time.Until(gc.expiry)))
	if resumed && resume.retire.Before(gc.retire) {
		// Same certificates as the connection that negotiated the session: same retirement,
		// or each resumed reconnect would creep closer to the expiry.
		gc.retire = resume.retire
	}
	for n := gc.retire.UnixNano(); ; {
		cur := g.sweepAt.Load()
		if (cur != 0 && cur <= n) || g.sweepAt.CompareAndSwap(cur, n) {
			break
		}
	}
	return tc, nil
}

func (g *expiryGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	now := time.Now()
	svid, err := g.src.GetX509SVID()
	if err != nil {
		g.t.CloseIdleConnections()
		return nil, fmt.Errorf("own SVID: %w: %w", ErrExpired, err)
	}
	own := svid.Certificates[0].NotAfter
	if !now.Before(own) {
		g.t.CloseIdleConnections()
		return nil, fmt.Errorf("own SVID %s expired at %s: %w", svid.ID, own.UTC().Format(time.RFC3339), ErrExpired)
	}
	if leaf := svid.Certificates[0]; g.lastOwn.Swap(leaf) != leaf {
		// Rotated (or the first request): idle connections still present the old SVID.
		g.t.CloseIdleConnections()
	}
	if at := g.sweepAt.Load(); at != 0 && now.UnixNano() >= at && g.sweepAt.CompareAndSwap(at, 0) {
		g.t.CloseIdleConnections()
	}
	resp, stale, err := g.send(r)
	if err != nil && stale && rewindable(r) {
		// The pooled connection was closed before the request went out on it: send it again,
		// on a connection dialled now. Only once: a new connection is not stale.
		if r.GetBody != nil {
			body, berr := r.GetBody()
			if berr != nil {
				return nil, err
			}
			r = r.Clone(r.Context())
			r.Body = body
		}
		resp, _, err = g.send(r)
	}
	return resp, err
}

// send makes one round trip and reports whether it was handed a connection past its
// certificates' expiry (which it closed instead of using).
func (g *expiryGuard) send(r *http.Request) (*http.Response, bool, error) {
	var (
		stale atomic.Bool
		out   *http.Request // our copy, so marking it last-on-its-connection touches no caller's request
	)
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		tc, ok := info.Conn.(*tls.Conn)
		if !ok {
			return
		}
		gc, ok := tc.NetConn().(*guardedConn)
		if !ok {
			return
		}
		// GotConn runs on the round trip's goroutine before the request is written, so the
		// transport reads Close after this.
		switch now := time.Now(); {
		case !now.Before(gc.expiry):
			stale.Store(true)
			tc.Close()
		case !now.Before(gc.retire):
			out.Close = true
		}
	}}
	out = r.WithContext(httptrace.WithClientTrace(r.Context(), trace))
	resp, err := g.t.RoundTrip(out)
	if err != nil && stale.Load() {
		err = fmt.Errorf("pooled connection past its certificates' NotAfter: %w: %w", ErrExpired, err)
	}
	return resp, stale.Load(), err
}

func rewindable(r *http.Request) bool {
	return r.Body == nil || r.Body == http.NoBody || r.GetBody != nil
}
