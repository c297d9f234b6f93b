package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TLS session resumption (ADR 1001). A resumed TLS 1.3 handshake proves possession of a
// session secret instead of a private key and carries the peer certificates over from the
// session; crypto/tls does not call VerifyPeerCertificate for it, which is where go-spiffe
// checks the chain and our allowlist. So resumption is only safe with a second check:
// verifyOnResume runs the same chain verification (current trust bundle, current time,
// every certificate of the chain) and the same authorizer on the cached certificates.

// verifyOnResume returns a VerifyConnection hook that accepts a resumed handshake exactly
// when a full handshake presenting the session's certificates now would pass
// VerifyPeerCertificate. Full handshakes were checked there already; they pass through.
func verifyOnResume(bundle x509bundle.Source, authorize tlsconfig.Authorizer) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if !cs.DidResume {
			return nil
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("resumed session carries no peer certificate")
		}
		id, chains, err := x509svid.Verify(cs.PeerCertificates, bundle)
		if err != nil {
			return fmt.Errorf("resumed session: peer certificate no longer verifies: %w", err)
		}
		return authorize(id, chains)
	}
}

// maxTicketKeyAge bounds how long one ticket key encrypts tickets when the server's own
// SVID does not rotate (an agent outage); normally the key changes with the SVID.
const maxTicketKeyAge = time.Hour

// ticketKeys holds a server's session-ticket keys: a fresh random key whenever the own SVID
// rotates (or the key is maxTicketKeyAge old), and the one before it for tickets already
// issued. A ticket therefore opens for at most two SVID generations, and the keys never
// leave the process: a restarted or another replica's server cannot open them and does a
// full handshake instead. crypto/tls's own keys would live seven days.
type ticketKeys struct {
	src  x509svid.Source
	mu   sync.Mutex
	cfg  *tls.Config // holds the keys; its EncryptTicket and DecryptTicket do the cryptography
	leaf *x509.Certificate
	made time.Time
	cur  [32]byte
}

func newTicketKeys(src x509svid.Source) *ticketKeys { return &ticketKeys{src: src, cfg: &tls.Config{}} }

func (k *ticketKeys) current() *tls.Config {
	var leaf *x509.Certificate
	if svid, err := k.src.GetX509SVID(); err == nil && len(svid.Certificates) > 0 {
		leaf = svid.Certificates[0]
	}
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.made.IsZero() || now.Sub(k.made) >= maxTicketKeyAge || (leaf != nil && (k.leaf == nil || !leaf.Equal(k.leaf))) {
		prev := k.cur
		keys := [][32]byte{{}, prev}
		rand.Read(keys[0][:]) // never fails (crypto/rand panics rather than return an error)
		if k.made.IsZero() {
			keys = keys[:1]
		}
		k.cfg.SetSessionTicketKeys(keys)
		k.cur, k.leaf, k.made = keys[0], leaf, now
	}
	return k.cfg
}

func (k *ticketKeys) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	return k.current().EncryptTicket(cs, ss)
}

func (k *ticketKeys) unwrap(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	return k.current().DecryptTicket(identity, cs)
}

// serverResumption makes c issue and accept tickets under its own keys and re-check every
// resumed client against the bundle and authorize.
func serverResumption(c *tls.Config, src Source, authorize tlsconfig.Authorizer) *tls.Config {
	c.VerifyConnection = verifyOnResume(src, authorize)
	keys := newTicketKeys(src)
	c.WrapSession, c.UnwrapSession = keys.wrap, keys.unwrap
	return c
}

// sessions is Client's TLS session cache: per server address, the latest session and the
// client SVID it authenticated. A session is offered only to a dial presenting that same
// SVID (a rotated SVID must reach the server in a full handshake: resuming would show it
// the old certificate) and only until the connection that negotiated it is due for
// retirement (resuming it would not move the certificates' expiry). When a dial finds a
// full handshake for its SVID already under way to a server that issues tickets, it waits
// for that handshake's ticket and resumes, so the reconnects after a rotation cost one
// full handshake per server address instead of one per connection.
type sessions struct {
	mu       sync.Mutex
	m        map[string]*session
	ticketed map[string]bool // the server at the address has issued a ticket before
}

type session struct {
	own    *x509.Certificate
	state  *tls.ClientSessionState // nil until the server's ticket arrives
	retire time.Time               // of the connection that negotiated it
	done   bool                    // ready is closed
	ready  chan struct{}           // closed when state is set or the full handshake gave up
}

func newSessions() *sessions {
	return &sessions{m: map[string]*session{}, ticketed: map[string]bool{}}
}

// offered is a session as take hands it to one dial.
type offered struct {
	own    *x509.Certificate
	state  *tls.ClientSessionState
	retire time.Time
}

// take decides what a dial to addr presenting own does: resume the returned session, or
// lead a full handshake whose ticket later dials may wait for (lead is the placeholder its
// ticket fills). It waits, bounded by ctx, while another dial leads.
func (s *sessions) take(ctx context.Context, addr string, own *x509.Certificate) (resume *offered, lead *session) {
	for {
		s.mu.Lock()
		e := s.m[addr]
		if e != nil && e.own.Equal(own) {
			if e.state != nil && time.Now().Before(e.retire) {
				o := &offered{own: e.own, state: e.state, retire: e.retire}
				s.mu.Unlock()
				return o, nil
			}
			if e.state == nil && !e.done && s.ticketed[addr] {
				ready := e.ready
				s.mu.Unlock()
				select {
				case <-ready:
					continue
				case <-ctx.Done():
					// No ticket came in time: full handshake, and stop waiting on this server
					// until it issues one again.
					s.mu.Lock()
					s.ticketed[addr] = false
					s.mu.Unlock()
					return nil, nil
				}
			}
		}
		n := &session{own: own, ready: make(chan struct{})}
		s.m[addr] = n
		s.mu.Unlock()
		return nil, n
	}
}

// giveUp releases the dials waiting on lead once its handshake failed or its connection
// closed without a ticket.
func (s *sessions) giveUp(addr string, lead *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !lead.done {
		lead.done = true
		close(lead.ready)
	}
	if s.m[addr] == lead && lead.state == nil {
		delete(s.m, addr)
	}
}

// store records a ticket received on a connection that presented own and retires at
// retire; cs nil is crypto/tls forgetting the session (its server certificate expired).
func (s *sessions) store(addr string, own *x509.Certificate, retire time.Time, cs *tls.ClientSessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[addr]
	if cs == nil {
		if e != nil && e.state != nil {
			delete(s.m, addr)
		}
		return
	}
	s.ticketed[addr] = true
	if own == nil {
		return
	}
	if e == nil {
		e = &session{own: own, ready: make(chan struct{})}
		s.m[addr] = e
	} else if !e.own.Equal(own) {
		// A ticket for an SVID that has been rotated away on a connection still open: the
		// entry belongs to the current SVID.
		return
	}
	e.state, e.retire = cs, retire
	if !e.done {
		e.done = true
		close(e.ready)
	}
}

// connSessions is the ClientSessionCache of one dialled connection: it offers exactly the
// session take chose and files the tickets the server sends under the connection's SVID.
type connSessions struct {
	s     *sessions
	addr  string
	offer *tls.ClientSessionState
	gc    *guardedConn
}

func (c *connSessions) Get(string) (*tls.ClientSessionState, bool) { return c.offer, c.offer != nil }

func (c *connSessions) Put(_ string, cs *tls.ClientSessionState) {
	c.s.store(c.addr, c.gc.ownLeaf, c.gc.retire, cs)
}
