// Package transport authenticates every hop with SPIFFE identities. In direct mode the
// service terminates mutual TLS itself with its SVID and refuses, during the handshake, any
// peer whose SPIFFE ID is not on the allowlist derived from the topology. In mesh mode an
// Istio sidecar terminates mTLS and the service reads the peer ID from the
// X-Forwarded-Client-Cert header its own sidecar appended, then applies the same allowlist.
// Either way handlers see one typed caller identity (package caller).
package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/telemetry"
)

// Mode says who terminates mutual TLS.
type Mode string

const (
	// Direct: the service terminates mTLS with its own SVID (local, compose, plain kind).
	Direct Mode = "direct"
	// Mesh: an Istio sidecar terminates mTLS; the peer ID comes from XFCC.
	Mesh Mode = "mesh"
)

// ParseMode accepts "direct" (also the empty string) and "mesh".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", string(Direct):
		return Direct, nil
	case string(Mesh):
		return Mesh, nil
	}
	return "", fmt.Errorf("transport mode %q: want direct or mesh", s)
}

// Source is what an mTLS endpoint needs: its own SVID and the bundles to verify peers.
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// ErrPeerNotAllowed is the handshake failure for a peer outside the allowlist.
var ErrPeerNotAllowed = errors.New("peer SPIFFE ID not allowed")

// HandshakeFailures counts mTLS handshakes refused by this process, by reason. It is
// registered on the default registry the first time it is needed.
var HandshakeFailures = telemetry.Lazy(func() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztbank_mtls_handshake_failures_total",
		Help: "mTLS handshakes refused, by reason (not_allowed, bad_certificate, other).",
	}, []string{"reason"})
})

// Handshakes counts mTLS handshakes this process completed as a server, by whether the
// client resumed a session. Clients keep connections alive, so in steady state it should
// not move with the request rate: each increment is a connection set up (issue 14 reports
// handshakes per 1,000 requests from it).
var Handshakes = telemetry.Lazy(func() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztbank_mtls_handshakes_total",
		Help: "mTLS handshakes completed as a server, by resumed (true, false).",
	}, []string{"resumed"})
})

// countHandshakes makes c count every handshake it completes. VerifyConnection runs after
// the peer certificate checks on full and resumed handshakes alike, and only for
// handshakes that get that far; refused ones are counted by HandshakeFailures.
func countHandshakes(c *tls.Config) *tls.Config {
	full, resumed := Handshakes().WithLabelValues("false"), Handshakes().WithLabelValues("true")
	next := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if next != nil {
			if err := next(cs); err != nil {
				return err
			}
		}
		if cs.DidResume {
			resumed.Inc()
		} else {
			full.Inc()
		}
		return nil
	}
	return c
}

// allowlist authorizes exactly the given IDs and counts refusals.
func allowlist(allowed []spiffeid.ID) tlsconfig.Authorizer {
	ids := slices.Clone(allowed)
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if slices.Contains(ids, id) {
			return nil
		}
		HandshakeFailures().WithLabelValues("not_allowed").Inc()
		return fmt.Errorf("%w: %s", ErrPeerNotAllowed, id)
	}
}

// ServerTLS returns a server TLS config that requires a client SVID from src's trust
// domain whose ID is in allowed. An empty allowlist refuses everyone: deny by default.
// The config reads the SVID from src on every handshake, so rotation needs no restart.
// It issues session tickets under keys that rotate with its SVID, and a client resuming
// one is verified again, chain and allowlist, as in a full handshake (ADR 1001).
func ServerTLS(src Source, allowed []spiffeid.ID) *tls.Config {
	if benchOff {
		return nil // plain HTTP (tools/pathbench's zero-trust-off reference build)
	}
	auth := allowlist(allowed)
	c := tlsconfig.MTLSServerConfig(src, src, auth)
	c.MinVersion = tls.VersionTLS13
	return countHandshakes(serverResumption(c, src, auth))
}

// ServerTLSAnyMember accepts any workload of the trust domain. It is only for endpoints
// that serve public data over mTLS (the edge's JWKS), where the point of mTLS is that the
// client authenticates the server.
func ServerTLSAnyMember(src Source, td spiffeid.TrustDomain) *tls.Config {
	if benchOff {
		return nil
	}
	auth := tlsconfig.AuthorizeMemberOf(td)
	c := tlsconfig.MTLSServerConfig(src, src, auth)
	c.MinVersion = tls.VersionTLS13
	return countHandshakes(serverResumption(c, src, auth))
}

// ClientTLS returns a client TLS config that presents src's SVID and accepts only the
// server whose SPIFFE ID is server.
func ClientTLS(src Source, server spiffeid.ID) *tls.Config {
	auth := allowlist([]spiffeid.ID{server})
	c := tlsconfig.MTLSClientConfig(src, src, auth)
	c.MinVersion = tls.VersionTLS13
	// Sessions are resumed (Client gives each connection a session cache); a resumed
	// server is checked again like a new one (ADR 1001).
	c.VerifyConnection = verifyOnResume(src, auth)
	return c
}

// ClientOption configures Client.
type ClientOption func(*http.Transport, *http.Client)

// WithTimeout bounds each request, including reading the body. Default 10s.
func WithTimeout(d time.Duration) ClientOption {
	return func(_ *http.Transport, c *http.Client) { c.Timeout = d }
}

// WithRoundTripper wraps the transport, for tracing.
func WithRoundTripper(wrap func(http.RoundTripper) http.RoundTripper) ClientOption {
	return func(_ *http.Transport, c *http.Client) { c.Transport = wrap(c.Transport) }
}

// Client returns an HTTP client that talks mTLS to exactly one server identity. Connections
// are kept alive and pooled: a full handshake costs about as much as 50 policy decisions,
// so one per request would be a defect. Requests made with a context that carries a
// verified user forward that user's internal JWT, so the next service can verify it too.
//
// Pooled connections do not outlive the certificates they were opened with (ADR 0989): the
// transport dials through an expiry guard that closes idle connections when the workload's
// SVID rotates, never reuses a connection past its own or the server's NotAfter, and fails
// requests with ErrExpired while the workload's own SVID has expired. New connections
// resume a TLS session negotiated with the current SVID where one is fresh enough, and the
// reconnects after a rotation wait for one full handshake's ticket (ADR 1001).
func Client(src Source, server spiffeid.ID, opts ...ClientOption) *http.Client {
	if benchOff {
		return benchClient(src, opts)
	}
	t := &http.Transport{
		TLSClientConfig:     ClientTLS(src, server),
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	g := newExpiryGuard(t, src, t.TLSClientConfig,
		&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}, t.TLSHandshakeTimeout)
	c := &http.Client{Transport: forwardUserToken{g}, Timeout: 10 * time.Second}
	for _, o := range opts {
		o(t, c)
	}
	return c
}

// MeshClient returns a plain-HTTP client for mesh mode, where the sidecar originates mTLS.
func MeshClient(opts ...ClientOption) *http.Client {
	t := &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second}
	c := &http.Client{Transport: forwardUserToken{t}, Timeout: 10 * time.Second}
	for _, o := range opts {
		o(t, c)
	}
	return c
}

type forwardUserToken struct{ next http.RoundTripper }

func (f forwardUserToken) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok := caller.From(r.Context()).User.Token; tok != "" && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return f.next.RoundTrip(r)
}

// Identify returns middleware that puts the peer workload's SPIFFE ID into the request
// context and refuses requests from workloads not in allowed (a second check behind the
// handshake in direct mode; the only app-level check in mesh mode). In direct mode the ID
// comes from the verified client certificate; in mesh mode from the last
// X-Forwarded-Client-Cert element, which is the one our own sidecar appended — earlier
// elements were written by whoever sent the request and prove nothing.
func Identify(mode Mode, allowed []spiffeid.ID) func(http.Handler) http.Handler {
	if benchOff {
		return benchIdentify(allowed)
	}
	ids := slices.Clone(allowed)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := PeerID(mode, r)
			if err != nil {
				slog.WarnContext(r.Context(), "request without workload identity refused", "mode", string(mode), "err", err.Error())
				problem.Write(w, r, problem.Refuse(problem.TypePeer, problem.ErrUnauthenticated, "no workload identity", nil))
				return
			}
			if !slices.Contains(ids, id) {
				slog.WarnContext(r.Context(), "workload not on allowlist refused", "peer", id.String())
				problem.Write(w, r, problem.Refuse(problem.TypePeer, problem.ErrForbidden, "workload not allowed to call this service", nil))
				return
			}
			next.ServeHTTP(w, r.WithContext(caller.WithWorkload(r.Context(), id)))
		})
	}
}

// PeerID extracts the authenticated peer SPIFFE ID of a request for the given mode.
func PeerID(mode Mode, r *http.Request) (spiffeid.ID, error) {
	switch mode {
	case Mesh:
		return IDFromXFCC(r.Header.Values("X-Forwarded-Client-Cert"))
	default:
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return spiffeid.ID{}, errors.New("no client certificate")
		}
		return x509svid.IDFromCert(r.TLS.PeerCertificates[0])
	}
}

// IDFromXFCC returns the URI of the last element of an X-Forwarded-Client-Cert header
// (possibly split over several header lines). Envoy separates elements with commas and
// key=value pairs with semicolons; values may be double-quoted, with backslash escapes.
//
// Only the last element is ours (our sidecar appended it); everything before it is what the
// client or an earlier proxy sent. The whole header is parsed strictly, and anything that
// is not a clean sequence of elements is refused: a quote left open or a stray quote in an
// earlier element could otherwise pull our sidecar's element into a value of the client's
// and make the client's URI look like the last one.
func IDFromXFCC(values []string) (spiffeid.ID, error) {
	if len(values) == 0 {
		return spiffeid.ID{}, errors.New("no X-Forwarded-Client-Cert header")
	}
	elems, err := parseXFCC(strings.Join(values, ","))
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("X-Forwarded-Client-Cert: %w", err)
	}
	for _, kv := range elems[len(elems)-1] {
		if !strings.EqualFold(kv[0], "URI") {
			continue
		}
		id, err := spiffeid.FromString(kv[1])
		if err != nil {
			return spiffeid.ID{}, fmt.Errorf("XFCC URI: %w", err)
		}
		return id, nil
	}
	return spiffeid.ID{}, errors.New("last XFCC element has no URI")
}

// parseXFCC splits an XFCC header into elements of key/value pairs, unquoting quoted
// values. Grammar (Envoy's): elements separated by ",", pairs by ";", a pair is
// key=value, a key is letters, a value is either a double-quoted string with backslash
// escapes or runs up to the next separator and contains no quote. Spaces are allowed
// around elements and pairs.
func parseXFCC(s string) ([][][2]string, error) {
	var (
		elems [][][2]string
		pairs [][2]string
		i     int
	)
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		skipSpace()
		start := i
		for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
			i++
		}
		key := s[start:i]
		if key == "" || i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("byte %d: want key=value", start)
		}
		i++
		var val strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			closed := false
			for i < len(s) && !closed {
				switch s[i] {
				case '\\':
					if i+1 >= len(s) {
						return nil, errors.New("escape at the end of the header")
					}
					val.WriteByte(s[i+1])
					i += 2
				case '"':
					closed = true
					i++
				default:
					val.WriteByte(s[i])
					i++
				}
			}
			if !closed {
				return nil, errors.New("a quoted value is never closed")
			}
		} else {
			for i < len(s) && s[i] != ',' && s[i] != ';' {
				if s[i] == '"' {
					return nil, fmt.Errorf("byte %d: quote inside an unquoted value", i)
				}
				val.WriteByte(s[i])
				i++
			}
		}
		pairs = append(pairs, [2]string{key, strings.TrimRight(val.String(), " \t")})
		skipSpace()
		if i >= len(s) {
			return append(elems, pairs), nil
		}
		switch s[i] {
		case ';':
		case ',':
			elems, pairs = append(elems, pairs), nil
		default:
			return nil, fmt.Errorf("byte %d: want ; or , after a value", i)
		}
		i++
	}
}
