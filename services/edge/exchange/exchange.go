// Package exchange is the edge's token-exchange core, shared by its two front ends (the
// local reverse proxy and the Emissary ext_authz endpoint): it checks the request's headers,
// verifies the client's external token, maps the user to a tenant, checks the route's tenant,
// and mints (or reuses) the internal token the services will verify.
package exchange

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/enrol"
	"github.com/ztbank/ztbank/services/edge/extoken"
)

// Header names the edge sets on the way in.
const (
	HeaderAuthorization = "Authorization"
	HeaderSpiffeID      = "X-Spiffe-Id"
	HeaderXFCC          = "X-Forwarded-Client-Cert"
)

// IdentityHeaders may only ever be set by the platform. A client sending one is trying to
// speak for a workload or user, so the request is refused rather than cleaned: a legitimate
// client has no reason to send them, and refusing works in ext_authz mode too, where the edge
// cannot delete a header from the request Emissary forwards.
var IdentityHeaders = []string{HeaderSpiffeID, HeaderXFCC}

// ErrIdentityHeader, ErrWrongTenant and ErrUntrustedIssuer are the refusals of the exchange
// itself; token refusals carry the reasons of packages extoken and enrol.
var (
	ErrIdentityHeader  = errors.New("client-supplied identity header")
	ErrWrongTenant     = errors.New("user belongs to another tenant")
	ErrUntrustedIssuer = errors.New("issuer not trusted for tenant")
)

// TokenVerifier verifies an external token.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (extoken.Token, error)
}

// Grant is the outcome of a successful exchange.
type Grant struct {
	Token usertoken.Token
	User  enrol.User
}

// Exchanger exchanges external tokens for internal ones.
type Exchanger struct {
	ext     TokenVerifier
	mapper  enrol.Mapper
	trusted map[string][]string
	minter  *usertoken.Issuer
	now     func() time.Time
	log     *slog.Logger
	// reuseMargin: a cached internal token with less life left than this is replaced, so
	// it cannot expire between the edge and the last service of the chain.
	reuseMargin time.Duration
	maxCached   int
	refused     []string // identity headers that refuse a request

	mu    sync.Mutex
	cache map[[sha256.Size]byte]Grant
}

// Option configures an Exchanger.
type Option func(*Exchanger)

// WithClock replaces time.Now for the mint cache.
func WithClock(now func() time.Time) Option { return func(e *Exchanger) { e.now = now } }

// WithLogger sets where refusals are logged.
func WithLogger(l *slog.Logger) Option { return func(e *Exchanger) { e.log = l } }

// WithReuseMargin sets the least remaining life of a reused internal token. Default 30s.
func WithReuseMargin(d time.Duration) Option { return func(e *Exchanger) { e.reuseMargin = d } }

// WithIdentityHeaders replaces the identity headers whose presence refuses a request
// (default IdentityHeaders). In mesh mode the edge's own sidecar sets
// X-Forwarded-Client-Cert on every inbound request after discarding any the caller sent
// (Istio's SANITIZE_SET), so there only X-Spiffe-Id is refused.
func WithIdentityHeaders(names ...string) Option {
	return func(e *Exchanger) { e.refused = names }
}

// WithCacheSize bounds the mint cache. Default 10000; 0 disables reuse.
func WithCacheSize(n int) Option { return func(e *Exchanger) { e.maxCached = n } }

// New returns an Exchanger. trusted lists, per tenant, the issuers whose users may act in
// that tenant: a provider trusted by one tenant cannot vouch for another tenant's user.
func New(ext TokenVerifier, mapper enrol.Mapper, trusted map[string][]string, minter *usertoken.Issuer, opts ...Option) *Exchanger {
	e := &Exchanger{ext: ext, mapper: mapper, trusted: trusted, minter: minter, now: time.Now,
		log: slog.Default(), reuseMargin: 30 * time.Second, maxCached: 10_000, refused: IdentityHeaders,
		cache: make(map[[sha256.Size]byte]Grant)}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Exchange authenticates the request headers h for a route of tenant. Errors wrap a problem
// category (401 for token failures, 403 for a valid user who may not go there, 503 when an
// issuer cannot be reached) with a client-safe message, and the full reason beneath.
func (e *Exchanger) Exchange(ctx context.Context, h http.Header, tenant string) (Grant, error) {
	for _, name := range e.refused {
		if _, present := h[http.CanonicalHeaderKey(name)]; present {
			return Grant{}, refuse(problem.ErrForbidden, ErrIdentityHeader, fmt.Errorf("%s: %w", name, ErrIdentityHeader))
		}
	}
	raw := usertoken.BearerToken(h)
	if raw == "" && h.Get(HeaderAuthorization) != "" {
		return Grant{}, refuse(problem.ErrUnauthenticated, extoken.ErrMalformed, fmt.Errorf("not a bearer credential: %w", extoken.ErrMalformed))
	}
	if raw == "" {
		return Grant{}, refuse(problem.ErrUnauthenticated, extoken.ErrMissing, extoken.ErrMissing)
	}
	key := sha256.Sum256([]byte(raw))
	if g, ok := e.cached(key); ok {
		if err := e.checkTenant(g, tenant); err != nil {
			return Grant{}, err
		}
		_, grants := metrics()
		grants.WithLabelValues(tenant, "reused").Inc()
		return g, nil
	}
	tok, err := e.ext.Verify(ctx, raw)
	if err != nil {
		reason := extoken.Reason(err)
		if errors.Is(err, extoken.ErrUnavailable) {
			return Grant{}, refuse(problem.ErrUnavailable, reason, err)
		}
		if reason == nil {
			reason = extoken.ErrMalformed
		}
		return Grant{}, refuse(problem.ErrUnauthenticated, reason, err)
	}
	u, err := e.mapper.Map(tok.Issuer, tok.Claims)
	if err != nil {
		return Grant{}, refuse(problem.ErrForbidden, enrol.ErrNotEnrolled, err)
	}
	// The mappers already consider only the tenants of tok.Issuer; checked again here so a
	// mapper that forgets cannot let one bank's provider vouch for another bank's user.
	if !slices.Contains(e.trusted[u.Tenant], tok.Issuer) {
		return Grant{}, refuse(problem.ErrForbidden, ErrUntrustedIssuer,
			fmt.Errorf("%s for %s: %w", tok.Issuer, u.Tenant, ErrUntrustedIssuer))
	}
	// Refuse before minting: a user of one tenant gets no token by knocking on another's door.
	if u.Tenant != tenant {
		return Grant{}, refuse(problem.ErrForbidden, ErrWrongTenant,
			fmt.Errorf("%s (tenant %s) on a %s route: %w", u.ID, u.Tenant, tenant, ErrWrongTenant))
	}
	it, err := e.minter.Issue(ctx, usertoken.Claims{User: u.ID, Tenant: u.Tenant, Roles: u.Roles, NotAfter: tok.Expiry})
	if err != nil {
		if errors.Is(err, usertoken.ErrExpired) {
			return Grant{}, refuse(problem.ErrUnauthenticated, extoken.ErrExpired, err)
		}
		return Grant{}, fmt.Errorf("mint internal token: %w", err)
	}
	g := Grant{Token: it, User: u}
	e.store(key, g)
	_, grants := metrics()
	grants.WithLabelValues(tenant, "minted").Inc()
	return g, nil
}

func (e *Exchanger) checkTenant(g Grant, tenant string) error {
	if g.User.Tenant != tenant {
		return refuse(problem.ErrForbidden, ErrWrongTenant,
			fmt.Errorf("%s (tenant %s) on a %s route: %w", g.User.ID, g.User.Tenant, tenant, ErrWrongTenant))
	}
	return nil
}

func (e *Exchanger) cached(key [sha256.Size]byte) (Grant, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, ok := e.cache[key]
	if !ok {
		return Grant{}, false
	}
	if g.Token.Expiry.Sub(e.now()) < e.reuseMargin {
		delete(e.cache, key)
		return Grant{}, false
	}
	return g, true
}

func (e *Exchanger) store(key [sha256.Size]byte, g Grant) {
	if e.maxCached <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.cache) >= e.maxCached {
		now := e.now()
		for k, c := range e.cache {
			if c.Token.Expiry.Sub(now) < e.reuseMargin {
				delete(e.cache, k)
			}
		}
		for k := range e.cache {
			if len(e.cache) < e.maxCached {
				break
			}
			delete(e.cache, k)
		}
	}
	e.cache[key] = g
}

// Refusal is an exchange failure: a problem category and client-safe reason, with the full
// cause kept for the log.
type Refusal struct {
	Public error // a *problem.Public: what the client sees
	Reason error // the sentinel naming the failed check
	Cause  error
}

func (r *Refusal) Error() string { return r.Reason.Error() + ": " + r.Cause.Error() }

// Unwrap exposes both the problem category (for the status) and the cause (for errors.Is on
// the specific reason).
func (r *Refusal) Unwrap() []error { return []error{r.Public, r.Cause} }

// refuse marks the refusal as the edge's (problem.TypeEdge), so a client and the isolation
// suite can tell it from a service's 401/403; an issuer outage is no refusal and keeps its
// category's type.
func refuse(category, reason, cause error) error {
	pub := problem.Refuse(problem.TypeEdge, category, reason.Error(), nil)
	if errors.Is(category, problem.ErrUnavailable) {
		pub = problem.Errorf(category, reason.Error())
	}
	return &Refusal{Public: pub, Reason: reason, Cause: cause}
}

// Authorize runs Exchange for r and, on failure, logs the refusal with its reason and writes
// the problem+json response. It reports whether the request may proceed.
func (e *Exchanger) Authorize(w http.ResponseWriter, r *http.Request, tenant string) (Grant, bool) {
	g, err := e.Exchange(r.Context(), r.Header, tenant)
	if err == nil {
		return g, true
	}
	d := problem.From(err)
	reason := "internal error"
	var rf *Refusal
	if errors.As(err, &rf) {
		reason = rf.Reason.Error()
	}
	refusals, _ := metrics()
	refusals.WithLabelValues(reason, strconv.Itoa(d.Status)).Inc()
	level := slog.LevelWarn
	if d.Status >= 500 {
		level = slog.LevelError
	}
	e.log.Log(r.Context(), level, "request refused", "reason", reason, "err", err.Error(),
		"status", d.Status, "tenant", tenant, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	if d.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ztbank"`)
	}
	problem.Write(w, r, err)
	return Grant{}, false
}
