package transport

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/devkit/spiffetest"
	"github.com/ztbank/ztbank/libs/problem"
)

// shortLife is how long the short-lived SVIDs of these tests are valid. X.509 keeps
// NotAfter in whole seconds, so the certificate's own value is what the tests wait past.
const shortLife = 3 * time.Second

// rotatingSource is a Source whose SVID the test replaces, as the Workload API does.
type rotatingSource struct {
	svid   atomic.Pointer[x509svid.SVID]
	bundle *x509bundle.Bundle
}

func newRotatingSource(s *x509svid.SVID, b *x509bundle.Bundle) *rotatingSource {
	r := &rotatingSource{bundle: b}
	r.svid.Store(s)
	return r
}

func (s *rotatingSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid.Load(), nil }
func (s *rotatingSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle, nil
}
func (s *rotatingSource) NotAfter() time.Time { return s.svid.Load().Certificates[0].NotAfter }

// waitPast blocks until the clock is past notAfter by a margin: the wait is derived from the
// certificate's own NotAfter, and the condition is checked, not assumed.
func waitPast(t *testing.T, notAfter time.Time) {
	t.Helper()
	const margin = 100 * time.Millisecond
	deadline := notAfter.Add(margin)
	for now := time.Now(); now.Before(deadline); now = time.Now() {
		<-time.After(deadline.Sub(now))
	}
	if !time.Now().After(notAfter) {
		t.Fatalf("clock not past NotAfter %s", notAfter)
	}
}

// mtlsServer serves h over real mTLS on a loopback port (HTTP/2 offered, as ServeTLS does)
// and reports each request's connection and client certificate serial.
func mtlsServer(t *testing.T, src Source, allowed spiffeid.ID, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.RemoteAddr, r.TLS.PeerCertificates[0].SerialNumber)
	})
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{Handler: h, TLSConfig: ServerTLS(src, []spiffeid.ID{allowed}), ErrorLog: quietLog()}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

type reply struct {
	Status  int
	Reused  bool   // the request went out on a kept-alive connection
	Body    string // "remote-addr serial" from the handler
	Type    string // problem type of a refusal
	Failed  bool   // no response at all
	Proto   int
	errText string
}

func get(t *testing.T, c *http.Client, url string) reply {
	t.Helper()
	var reused bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return reply{Failed: true, errText: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := reply{Status: resp.StatusCode, Reused: reused, Proto: resp.ProtoMajor}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		var p struct{ Type string }
		json.Unmarshal(b, &p)
		out.Type = p.Type
	} else {
		out.Body = string(b)
	}
	return out
}

// TestFailClosedRefusesExpiredIdentities is the chaos suite's agent-outage finding on
// real sockets: a client keeps an mTLS connection alive across an SVID's NotAfter. Without
// FailClosed the kept-alive connection goes on carrying requests; with it, the first
// request after expiry is refused with 503 identity-expired and the connection is closed,
// so the next request needs a new handshake (which the expired certificate cannot pass).
func TestFailClosedRefusesExpiredIdentities(t *testing.T) {
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	type step struct {
		Status int
		Reused bool
		Type   string
		Failed bool
	}
	cases := []struct {
		name       string
		expires    string // "client" or "server": whose SVID is short-lived
		failClosed bool
		http2      bool
		after      []step // the requests after expiry
	}{
		{name: "without FailClosed a kept-alive connection outlives the client SVID (the finding)", expires: "client",
			after: []step{{Status: 200, Reused: true}, {Status: 200, Reused: true}}},
		{name: "expired client certificate, HTTP/1.1", expires: "client", failClosed: true,
			after: []step{{Status: 503, Reused: true, Type: problem.TypeIdentityExpired}, {Failed: true}}},
		{name: "expired client certificate, HTTP/2", expires: "client", failClosed: true, http2: true,
			after: []step{{Status: 503, Reused: true, Type: problem.TypeIdentityExpired}, {Failed: true}}},
		{name: "server's own SVID expired, HTTP/1.1", expires: "server", failClosed: true,
			after: []step{{Status: 503, Reused: true, Type: problem.TypeIdentityExpired}, {Failed: true}}},
		{name: "server's own SVID expired, HTTP/2", expires: "server", failClosed: true, http2: true,
			after: []step{{Status: 503, Reused: true, Type: problem.TypeIdentityExpired}, {Failed: true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			long := time.Now().Add(time.Hour)
			short := time.Now().Add(shortLife)
			serverSVID := ca.SVIDUntil(t, serverID, long)
			clientSVID := ca.SVIDUntil(t, clientID, long)
			if tc.expires == "server" {
				serverSVID = ca.SVIDUntil(t, serverID, short)
			} else {
				clientSVID = ca.SVIDUntil(t, clientID, short)
			}
			src := newRotatingSource(serverSVID, bundle)
			var wrap func(http.Handler) http.Handler
			if tc.failClosed {
				wrap = FailClosed(src.NotAfter)
			}
			url := mtlsServer(t, src, clientID, wrap)
			// A plain keep-alive client, not Client: the server must hold the line on its own.
			tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(spiffetest.Source{SVID: clientSVID, Bundle: bundle}, spiffetest.Source{SVID: clientSVID, Bundle: bundle}, tlsconfig.AuthorizeID(serverID)),
				ForceAttemptHTTP2: tc.http2}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}

			first := get(t, c, url)
			wantProto := map[bool]int{false: 1, true: 2}[tc.http2]
			if first.Status != 200 || first.Proto != wantProto {
				t.Fatalf("before expiry: %+v, want 200 over HTTP/%d", first, wantProto)
			}
			expiry := clientSVID.Certificates[0].NotAfter
			if tc.expires == "server" {
				expiry = serverSVID.Certificates[0].NotAfter
			}
			waitPast(t, expiry)
			var got []step
			for range tc.after {
				r := get(t, c, url)
				got = append(got, step{Status: r.Status, Reused: r.Reused, Type: r.Type, Failed: r.Failed})
			}
			if d := cmp.Diff(tc.after, got); d != "" {
				t.Errorf("requests after NotAfter (-want +got):\n%s", d)
			}
		})
	}
}

// TestFailClosedAllocatesNothing: the check is on every request's path.
func TestFailClosedAllocatesNothing(t *testing.T) {
	ca := spiffetest.NewCA(t, testTD)
	id := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	peer := ca.SVIDUntil(t, id, time.Now().Add(time.Hour))
	own := newRotatingSource(ca.SVIDUntil(t, id, time.Now().Add(time.Hour)), nil)
	served := 0
	h := FailClosed(own.NotAfter)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served++ }))
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: peer.Certificates}
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(nil, r) }); n != 0 {
		t.Errorf("FailClosed allocated %v times per request, want 0", n)
	}
	if served == 0 {
		t.Error("the wrapped handler never ran")
	}
}

// TestClientDoesNotOutliveCertificates: Client's pooled connections are not reused past
// the certificates they were opened with. Each case keeps a connection alive, lets a
// certificate on it expire or rotate, and checks where the next request went.
func TestClientDoesNotOutliveCertificates(t *testing.T) {
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	type outcome struct {
		NewConnection bool   // served on a connection other than the first request's
		Serial        string // the client certificate the server saw
		ErrExpired    bool
	}
	cases := []struct {
		name        string
		clientShort bool // the client's SVID is short-lived too
		// event happens between the first and second request.
		event func(t *testing.T, server, client *rotatingSource, serial int64)
		want  outcome
	}{
		{name: "server's certificate on the connection expired (server rotated meanwhile)",
			event: func(t *testing.T, server, _ *rotatingSource, serial int64) {
				old := server.NotAfter()
				server.svid.Store(ca.SVIDUntil(t, serverID, time.Now().Add(time.Hour)))
				waitPast(t, old)
			},
			want: outcome{NewConnection: true, Serial: "first"}},
		{name: "own SVID rotated",
			event: func(t *testing.T, _, client *rotatingSource, serial int64) {
				client.svid.Store(ca.SVIDUntil(t, clientID, time.Now().Add(time.Hour)))
			},
			want: outcome{NewConnection: true, Serial: "rotated"}},
		{name: "own SVID expired (agent gone)",
			event:       func(t *testing.T, _, client *rotatingSource, _ int64) { waitPast(t, client.NotAfter()) },
			clientShort: true, want: outcome{ErrExpired: true}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			short := time.Now().Add(shortLife)
			server := newRotatingSource(ca.SVIDUntil(t, serverID, short), bundle)
			clientUntil := time.Now().Add(time.Hour)
			if tc.clientShort {
				clientUntil = short
			}
			client := newRotatingSource(ca.SVIDUntil(t, clientID, clientUntil), bundle)
			// No FailClosed on the server: the client must not lean on it.
			url := mtlsServer(t, server, clientID, nil)
			c := Client(client, serverID)
			first := get(t, c, url)
			if first.Status != 200 || first.Proto != 2 {
				t.Fatalf("first request: %+v, want 200 over HTTP/2", first)
			}
			if again := get(t, c, url); !again.Reused || again.Body != first.Body {
				t.Fatalf("second request before any expiry: %+v, want the first connection kept alive", again)
			}
			tc.event(t, server, client, int64(100*i+3))
			r := get(t, c, url)
			got := outcome{ErrExpired: r.Failed && strings.Contains(r.errText, ErrExpired.Error())}
			if !r.Failed {
				firstAddr, firstSerial, _ := strings.Cut(first.Body, " ")
				addr, serial, _ := strings.Cut(r.Body, " ")
				got.NewConnection = addr != firstAddr
				got.Serial = map[bool]string{true: "first", false: "rotated"}[serial == firstSerial]
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("request after the event (-want +got):\n%s\nreply: %+v", d, r)
			}
		})
	}
}

// TestClientRetiresBusyConnection: a connection busy when its server certificate expires
// is not closed under its request, but the next request handed it after expiry does not
// go out on it (over HTTP/1.1 the pool hands back exactly that connection, most recently
// used first, which is the path a busy HTTP/2 connection takes too).
func TestClientRetiresBusyConnection(t *testing.T) {
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	server := newRotatingSource(ca.SVIDUntil(t, serverID, time.Now().Add(shortLife)), bundle)
	client := newRotatingSource(ca.SVIDUntil(t, clientID, time.Now().Add(time.Hour)), bundle)
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	url := mtlsServer(t, server, clientID, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				entered <- struct{}{}
				<-release
			}
			next.ServeHTTP(w, r)
		})
	})
	c := Client(client, serverID, func(tr *http.Transport, _ *http.Client) { tr.ForceAttemptHTTP2 = false })
	first := get(t, c, url)
	if first.Status != 200 || first.Proto != 1 {
		t.Fatalf("first request: %+v, want 200 over HTTP/1.1", first)
	}
	old := server.NotAfter()
	slow := make(chan reply, 1)
	go func() { slow <- get(t, c, url+"/slow") }()
	<-entered
	server.svid.Store(ca.SVIDUntil(t, serverID, time.Now().Add(time.Hour)))
	waitPast(t, old)
	// The sweep finds the first connection busy; this request dials a second one.
	second := get(t, c, url)
	close(release)
	s := <-slow
	third := get(t, c, url) // the pool's most recent idle connection is the first one
	firstAddr, _, _ := strings.Cut(first.Body, " ")
	addr := func(r reply) string { a, _, _ := strings.Cut(r.Body, " "); return a }
	got := []any{s.Status, addr(s) == firstAddr, second.Status, addr(second) == firstAddr, third.Status, addr(third) == addr(second)}
	want := []any{200, true, 200, false, 200, true}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(slow status, slow on first conn, second status, second on first conn, third status, third on second conn) -want +got:\n%s\nslow %+v second %+v third %+v", d, s, second, third)
	}
}

func TestRetireMargin(t *testing.T) {
	got := []time.Duration{retireMargin(time.Hour), retireMargin(time.Minute), retireMargin(4 * time.Second)}
	if d := cmp.Diff([]time.Duration{maxRetireMargin, 15 * time.Second, time.Second}, got); d != "" {
		t.Error(d)
	}
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
