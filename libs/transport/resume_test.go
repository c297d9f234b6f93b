package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/spiffetest"
)

// barrier holds requests in the handler until n of them are inside at once, so n requests
// need n connections.
type barrier struct {
	mu   sync.Mutex
	n    int
	in   int
	open chan struct{}
}

func (b *barrier) arm(n int) {
	b.mu.Lock()
	b.n, b.in, b.open = n, 0, make(chan struct{})
	b.mu.Unlock()
}

func (b *barrier) wait(ctx context.Context) {
	b.mu.Lock()
	open := b.open
	if b.in++; b.in == b.n {
		close(open)
	}
	b.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
	}
}

// handshakeCount is what one phase of TestReconnectsAfterRotationResume saw.
type handshakeCount struct {
	Full, Resumed int // new connections, by whether the client resumed (DidResume)
	ServerFull    int // the server's counter (ztbank_mtls_handshakes_total), same phase
	ServerResumed int
	ClientSerials []string // client certificate serials the server saw, distinct
	ServerSerials []string // server certificate serials the client saw, distinct
}

// TestReconnectsAfterRotationResume: a Client keeping four HTTP/1.1 connections to a server
// (four requests held in the handler at once) rotates its SVID, then the server rotates
// its own and the old one comes due. Each time every connection is re-established, and
// the reconnects cost one full handshake, presenting the new certificate; the other three
// resume the session that handshake negotiated, waiting for its ticket when it has not
// arrived yet. The server's handshake counter agrees.
func TestReconnectsAfterRotationResume(t *testing.T) {
	const conns = 4
	// The server's first SVID must come due during the test: long enough for the first two
	// phases (a few handshakes), short enough to wait for.
	const serverLife = 6 * time.Second
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	server := newRotatingSource(ca.SVIDUntil(t, serverID, time.Now().Add(serverLife)), bundle)
	client := newRotatingSource(ca.SVIDUntil(t, clientID, time.Now().Add(time.Hour)), bundle)
	// serial is the serial number of a source's current certificate, as the peer reports it.
	serial := func(s *rotatingSource) string { return s.svid.Load().Certificates[0].SerialNumber.String() }
	server1, client1 := serial(server), serial(client)

	hold := &barrier{}
	url := mtlsServer(t, server, clientID, func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hold.wait(r.Context())
			fmt.Fprint(w, r.TLS.PeerCertificates[0].SerialNumber)
		})
	})
	c := Client(client, serverID, func(tr *http.Transport, _ *http.Client) { tr.ForceAttemptHTTP2 = false })

	full, resumed := Handshakes().WithLabelValues("false"), Handshakes().WithLabelValues("true")
	// phase makes conns requests at once. With leadFirst, the others start only once the
	// first has its connection: the first request after a rotation is the one that closes
	// the idle connections (ADR 0989), and a request racing it could still be handed one.
	phase := func(t *testing.T, leadFirst bool) handshakeCount {
		t.Helper()
		f0, r0 := testutil.ToFloat64(full), testutil.ToFloat64(resumed)
		hold.arm(conns)
		var (
			mu      sync.Mutex
			got     handshakeCount
			clients = map[string]bool{}
			servers = map[string]bool{}
			wg      sync.WaitGroup
			led     = make(chan struct{})
			lead    = sync.OnceFunc(func() { close(led) })
		)
		if !leadFirst {
			lead()
		}
		for i := range conns {
			if i == 1 {
				<-led
			}
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
					defer lead()
					if i.Reused {
						return
					}
					cs := i.Conn.(*tls.Conn).ConnectionState()
					mu.Lock()
					defer mu.Unlock()
					servers[cs.PeerCertificates[0].SerialNumber.String()] = true
					if cs.DidResume {
						got.Resumed++
					} else {
						got.Full++
					}
				}})
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := c.Do(req)
				if err != nil {
					lead()
					t.Errorf("request: %v", err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				mu.Lock()
				clients[string(b)] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		got.ServerFull = int(testutil.ToFloat64(full) - f0)
		got.ServerResumed = int(testutil.ToFloat64(resumed) - r0)
		for s := range clients {
			got.ClientSerials = append(got.ClientSerials, s)
		}
		for s := range servers {
			got.ServerSerials = append(got.ServerSerials, s)
		}
		return got
	}
	var log []string
	check := func(name string, got, want handshakeCount) {
		t.Helper()
		log = append(log, fmt.Sprintf("%s: %d full, %d resumed handshakes for %d connections", name, got.Full, got.Resumed, conns))
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", name, d)
		}
	}

	// Cold start: no session yet and the server has issued no ticket, so the concurrent dials
	// handshake in full; one that the scheduler delays past the first ticket may resume.
	cold := phase(t, false)
	if cold.Full < 1 {
		t.Errorf("cold start: %+v, want the first connection in a full handshake", cold)
	}
	check("cold start", cold, handshakeCount{Full: cold.Full, Resumed: conns - cold.Full, ServerFull: cold.Full, ServerResumed: conns - cold.Full,
		ClientSerials: []string{client1}, ServerSerials: []string{server1}})

	client.svid.Store(ca.SVIDUntil(t, clientID, time.Now().Add(time.Hour)))
	client2 := serial(client)
	check("client SVID rotated", phase(t, true), handshakeCount{Full: 1, Resumed: conns - 1, ServerFull: 1, ServerResumed: conns - 1,
		ClientSerials: []string{client2}, ServerSerials: []string{server1}})

	oldServer := server.NotAfter()
	if left := time.Until(oldServer); left < retireMargin(serverLife) {
		t.Fatalf("the first phases took until %v before the server's NotAfter, past the retirement of its connections: machine too slow for serverLife %v", left, serverLife)
	}
	server.svid.Store(ca.SVIDUntil(t, serverID, time.Now().Add(time.Hour)))
	server2 := serial(server)
	waitPast(t, oldServer)
	check("server SVID rotated, old one expired", phase(t, true), handshakeCount{Full: 1, Resumed: conns - 1, ServerFull: 1, ServerResumed: conns - 1,
		ClientSerials: []string{client2}, ServerSerials: []string{server2}})
	for _, l := range log {
		t.Log(l)
	}
}

// resumeServer serves cfg on a loopback port; each response says whether the server
// resumed the connection's session.
func resumeServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS.DidResume)
	}), TLSConfig: cfg, ErrorLog: quietLog()}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

// connect makes one request on a new connection with cfg and reports whether the handshake
// resumed, as the client saw it; "refused" when the handshake or request failed.
func connect(t *testing.T, url string, cfg *tls.Config) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	var didResume bool
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		didResume = i.Conn.(*tls.Conn).ConnectionState().DidResume
	}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "refused"
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "refused"
	}
	if string(b) != fmt.Sprint(didResume) {
		t.Errorf("client saw DidResume=%v, server %s", didResume, b)
	}
	return map[bool]string{true: "resumed", false: "full"}[didResume]
}

// TestResumptionIsVerifiedAgain: a resumed handshake skips VerifyPeerCertificate, where
// go-spiffe checks the chain and our allowlist; the sessions these cases resume would be
// accepted by crypto/tls alone. Each case first negotiates a session, then changes what a
// full handshake would check, and offers the session again.
func TestResumptionIsVerifiedAgain(t *testing.T) {
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	otherID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/user")
	serverSrc := spiffetest.Source{SVID: ca.SVID(t, serverID), Bundle: bundle}
	clientSrc := spiffetest.Source{SVID: ca.SVID(t, clientID), Bundle: bundle}

	// sharing makes b open a's tickets, as one process's two listeners, or a restart that
	// kept its ticket keys, would: what b allows must still decide.
	sharing := func(a, b *tls.Config) *tls.Config {
		b.WrapSession, b.UnwrapSession = a.WrapSession, a.UnwrapSession
		return b
	}
	// clientCfg is a plain client with a session cache, keyed by a fixed server name so a
	// session from one listener is offered to the other.
	clientCfg := func(src Source, expect spiffeid.ID, cache tls.ClientSessionCache) *tls.Config {
		c := ClientTLS(src, expect)
		c.ClientSessionCache, c.ServerName = cache, "ledger"
		return c
	}

	cases := []struct {
		name string
		run  func(t *testing.T) []string
		want []string
	}{
		{name: "same server, same allowlist: resumed (the control)", want: []string{"full", "resumed"},
			run: func(t *testing.T) []string {
				url := resumeServer(t, ServerTLS(serverSrc, []spiffeid.ID{clientID}))
				cfg := clientCfg(clientSrc, serverID, tls.NewLRUClientSessionCache(4))
				return []string{connect(t, url, cfg), connect(t, url, cfg)}
			}},
		{name: "server with the same ticket keys that also allows the client: resumed (the control)", want: []string{"full", "resumed"},
			run: func(t *testing.T) []string {
				a := ServerTLS(serverSrc, []spiffeid.ID{clientID})
				b := sharing(a, ServerTLS(serverSrc, []spiffeid.ID{otherID, clientID}))
				cfg := clientCfg(clientSrc, serverID, tls.NewLRUClientSessionCache(4))
				return []string{connect(t, resumeServer(t, a), cfg), connect(t, resumeServer(t, b), cfg)}
			}},
		{name: "client no longer on the server's allowlist: refused", want: []string{"full", "refused"},
			run: func(t *testing.T) []string {
				a := ServerTLS(serverSrc, []spiffeid.ID{clientID})
				b := sharing(a, ServerTLS(serverSrc, []spiffeid.ID{otherID}))
				cfg := clientCfg(clientSrc, serverID, tls.NewLRUClientSessionCache(4))
				return []string{connect(t, resumeServer(t, a), cfg), connect(t, resumeServer(t, b), cfg)}
			}},
		{name: "client's cached intermediate expired (leaf still valid): refused", want: []string{"full", "refused"},
			run: func(t *testing.T) []string {
				inter := ca.Intermediate(t, time.Now().Add(shortLife))
				leaf := inter.SVID(t, clientID)
				leaf.Certificates = append(leaf.Certificates, inter.Cert)
				url := resumeServer(t, ServerTLS(serverSrc, []spiffeid.ID{clientID}))
				cfg := clientCfg(spiffetest.Source{SVID: leaf, Bundle: bundle}, serverID, tls.NewLRUClientSessionCache(4))
				first := connect(t, url, cfg)
				waitPast(t, inter.Cert.NotAfter)
				return []string{first, connect(t, url, cfg)}
			}},
		{name: "client's cached leaf expired: refused (crypto/tls skips the session, the full handshake fails)", want: []string{"full", "refused"},
			run: func(t *testing.T) []string {
				leaf := ca.SVIDUntil(t, clientID, time.Now().Add(shortLife))
				url := resumeServer(t, ServerTLS(serverSrc, []spiffeid.ID{clientID}))
				cfg := clientCfg(spiffetest.Source{SVID: leaf, Bundle: bundle}, serverID, tls.NewLRUClientSessionCache(4))
				first := connect(t, url, cfg)
				waitPast(t, leaf.Certificates[0].NotAfter)
				return []string{first, connect(t, url, cfg)}
			}},
		{name: "client's cached certificate issued by an authority no longer in the bundle: refused", want: []string{"full", "refused"},
			run: func(t *testing.T) []string {
				src := &bundleSwap{Source: serverSrc}
				src.b.Store(bundle)
				url := resumeServer(t, ServerTLS(src, []spiffeid.ID{clientID}))
				cfg := clientCfg(clientSrc, serverID, tls.NewLRUClientSessionCache(4))
				first := connect(t, url, cfg)
				// The trust domain's authority was replaced (the old CA key retired).
				src.b.Store(x509bundle.FromX509Authorities(ca.TD, []*x509.Certificate{spiffetest.NewCA(t, testTD).Cert}))
				return []string{first, connect(t, url, cfg)}
			}},
		{name: "client expecting another server identity is offered this server's session: refused", want: []string{"full", "refused"},
			run: func(t *testing.T) []string {
				url := resumeServer(t, ServerTLS(serverSrc, []spiffeid.ID{clientID}))
				cache := tls.NewLRUClientSessionCache(4)
				return []string{connect(t, url, clientCfg(clientSrc, serverID, cache)), connect(t, url, clientCfg(clientSrc, otherID, cache))}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if d := cmp.Diff(tc.want, tc.run(t)); d != "" {
				t.Errorf("first connection, second connection (-want +got):\n%s", d)
			}
		})
	}
}

// TestTicketKeysRotateWithTheSVID: a ticket opens after one rotation of the server's SVID
// (the previous key is kept) and not after two; the client then handshakes in full.
func TestTicketKeysRotateWithTheSVID(t *testing.T) {
	ca := spiffetest.NewCA(t, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	server := newRotatingSource(ca.SVID(t, serverID), bundle)
	url := resumeServer(t, ServerTLS(server, []spiffeid.ID{clientID}))
	clientSrc := spiffetest.Source{SVID: ca.SVID(t, clientID), Bundle: bundle}
	// A client that keeps only its first session, so each connection offers the same ticket.
	first := &firstSession{}
	cfg := ClientTLS(clientSrc, serverID)
	cfg.ClientSessionCache = first
	var got []string
	got = append(got, connect(t, url, cfg), connect(t, url, cfg))
	server.svid.Store(ca.SVID(t, serverID))
	got = append(got, connect(t, url, cfg))
	server.svid.Store(ca.SVID(t, serverID))
	got = append(got, connect(t, url, cfg))
	want := []string{"full", "resumed", "resumed", "full"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("new, same key, one rotation, two rotations (-want +got):\n%s", d)
	}
}

// bundleSwap is a Source whose trust bundle the test replaces.
type bundleSwap struct {
	spiffetest.Source
	b atomic.Pointer[x509bundle.Bundle]
}

func (s *bundleSwap) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.b.Load(), nil
}

type firstSession struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (f *firstSession) Get(string) (*tls.ClientSessionState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs, f.cs != nil
}

func (f *firstSession) Put(_ string, cs *tls.ClientSessionState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cs == nil {
		f.cs = cs
	}
}

// BenchmarkHandshake measures one mTLS handshake, both ends, on loopback: full
// (two certificate chains verified, two signatures made and checked) against resumed
// (a session ticket, DHE, and verifyOnResume's check of the cached chain on each side).
func BenchmarkHandshake(b *testing.B) {
	ca := spiffetest.NewCA(b, testTD)
	bundle := ca.Bundle()
	serverID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/ledger")
	clientID := spiffeid.RequireFromPath(ca.TD, "/ns/bank-b/sa/payment")
	serverCfg := ServerTLS(spiffetest.Source{SVID: ca.SVID(b, serverID), Bundle: bundle}, []spiffeid.ID{clientID})
	clientSrc := spiffetest.Source{SVID: ca.SVID(b, clientID), Bundle: bundle}
	// Loopback TCP, not net.Pipe: a resumed server writes its ticket while the client writes
	// its Finished, which an unbuffered pipe deadlocks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	once := func(b *testing.B, cfg *tls.Config) bool {
		done := make(chan error, 1)
		go func() {
			sc, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			defer sc.Close()
			s := tls.Server(sc, serverCfg)
			err = s.Handshake()
			if err == nil {
				_, err = s.Write([]byte{1}) // after the ticket, so the client reads it first
			}
			done <- err
		}()
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		c := tls.Client(cc, cfg)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return c.ConnectionState().DidResume
	}
	for _, resume := range []bool{false, true} {
		b.Run(map[bool]string{false: "full", true: "resumed"}[resume], func(b *testing.B) {
			cfg := ClientTLS(clientSrc, serverID)
			cfg.ServerName = "ledger"
			if resume {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
				once(b, cfg)
			}
			// CPU time of the process per handshake, beside wall time: on a shared machine the
			// wall clock mostly measures the other tenants.
			before := cpuTime(b)
			for b.Loop() {
				if got := once(b, cfg); got != resume {
					b.Fatalf("DidResume = %v", got)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
