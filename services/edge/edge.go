package main

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/telemetry"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/exchange"
)

// upstream is a tenant's gateway as the proxy reaches it.
type upstream struct {
	URL       *url.URL
	Transport http.RoundTripper // mTLS, authorising only the gateway's SPIFFE ID
	ID        spiffeid.ID
}

// deps is everything NewServer needs; main builds it from the environment, tests from
// loopback fakes and real keys.
type deps struct {
	Log            *slog.Logger
	Exchanger      *exchange.Exchanger
	Minter         *usertoken.Issuer
	Upstreams      map[string]upstream // by tenant
	Tenants        []string
	AuthzPrefix    string
	MaxHeaderBytes int
	MaxBodyBytes   int64
	// AuthzCaller says whether a request may use the ext_authz endpoint, which hands out
	// internal JWTs: only the ingress (Emissary) may. Nil refuses everyone.
	AuthzCaller func(*http.Request) error
	// Limits keep one tenant's users from starving another's (nil: no limits).
	Limits *Limits
}

// Limits are the edge's per-user and per-tenant budgets, applied to authenticated requests
// (an unauthenticated flood is refused by the exchange and cannot spend a tenant's budget):
// a rate per user, a rate per tenant and a number of requests in flight per tenant. Every
// refusal is a 429 problem with Retry-After, and it comes before the request goes inward.
type Limits struct {
	User, Tenant *server.RateLimiter
	InFlight     *server.Concurrency
}

// admit applies the limits to a request of user in tenant; the caller runs release when
// the request is done. A refused request has been answered.
func (l *Limits) admit(w http.ResponseWriter, r *http.Request, tenant, user string) (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	if ok, wait := l.User.Allow(tenant + "|" + user); !ok {
		server.WriteTooMany(w, r, "per-user rate", wait)
		return nil, false
	}
	if ok, wait := l.Tenant.Allow(tenant); !ok {
		server.WriteTooMany(w, r, "per-tenant rate", wait)
		return nil, false
	}
	release, ok = l.InFlight.Acquire(tenant)
	if !ok {
		server.WriteTooMany(w, r, "per-tenant concurrency", time.Second)
		return nil, false
	}
	return release, true
}

type edge struct {
	log            *slog.Logger
	ex             *exchange.Exchanger
	minter         *usertoken.Issuer
	upstreams      map[string]upstream
	tenants        []string
	authzPrefix    string
	maxHeaderBytes int
	maxBodyBytes   int64
	authzCaller    func(*http.Request) error
	budget         *Limits
}

// NewServer returns the edge's public handler: the tenant reverse proxy and the ext_authz
// endpoint.
func NewServer(d deps) http.Handler {
	e := newEdge(d)
	mux := http.NewServeMux()
	addRoutes(mux, e)
	return mux
}

// NewPublicHandler is NewServer behind the platform's tracing and request metrics, for the
// public listener: its callers are clients, so their trace context is a claim, not a parent
// (telemetry.UntrustedCallers). The edge starts every request's trace itself (a client's
// traceparent is kept only as a link) and drops client baggage, so a client can neither
// switch span recording off on every hop nor choose the trace ID in the audit lines.
func NewPublicHandler(d deps) http.Handler {
	return telemetry.Server(telemetry.UntrustedCallers())(NewServer(d))
}

// NewInternalServer returns the handler of the edge's mTLS listener.
func NewInternalServer(d deps) http.Handler {
	e := newEdge(d)
	mux := http.NewServeMux()
	addInternalRoutes(mux, e)
	return mux
}

func newEdge(d deps) *edge {
	return &edge{log: d.Log, ex: d.Exchanger, minter: d.Minter, upstreams: d.Upstreams, tenants: d.Tenants,
		authzPrefix: d.AuthzPrefix, maxHeaderBytes: d.MaxHeaderBytes, maxBodyBytes: d.MaxBodyBytes,
		authzCaller: d.AuthzCaller, budget: d.Limits}
}

// strippedHeaders never leave the edge towards a service. Hop-by-hop headers are removed by
// httputil.ReverseProxy itself; these are the ones a client could use to pose as the
// platform: identity headers (also refused up front, removed here as a second line), and any
// header that looks like a place an internal token might be read from.
var strippedHeaders = []string{
	exchange.HeaderSpiffeID, exchange.HeaderXFCC,
	"X-Internal-Token", "X-User-Token", "X-Forwarded-User", "X-Auth-Request-User",
	"X-Auth-Request-Access-Token", "Proxy-Authorization", "Forwarded",
}

// isStripped reports whether a client header must be removed before proxying. Every
// X-Ztbank-* header is reserved for the platform.
func isStripped(name string) bool {
	for _, s := range strippedHeaders {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return len(name) >= len("X-Ztbank-") && strings.EqualFold(name[:len("X-Ztbank-")], "X-Ztbank-")
}

type grantKey struct{}

// proxy authenticates a request for tenant and forwards it, without the tenant prefix, to
// the tenant's gateway with the internal token as its only credential.
func (e *edge) proxy(tenant string) http.Handler {
	up, ok := e.upstreams[tenant]
	if !ok {
		return e.unavailable("no gateway configured for " + tenant)
	}
	prefix := "/" + tenant
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			g := pr.In.Context().Value(grantKey{}).(exchange.Grant)
			pr.SetURL(up.URL)
			pr.Out.URL.Path = singleJoin(up.URL.Path, strings.TrimPrefix(pr.In.URL.Path, prefix))
			pr.Out.URL.RawPath = ""
			for name := range pr.Out.Header {
				if isStripped(name) {
					pr.Out.Header.Del(name)
				}
			}
			pr.Out.Header.Set(exchange.HeaderAuthorization, "Bearer "+g.Token.Raw)
			pr.Out.Header.Set(exchange.HeaderSpiffeID, g.User.ID.String())
			pr.SetXForwarded()
		},
		Transport: up.Transport,
		ErrorLog:  log.New(logWriter{e.log}, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			e.log.ErrorContext(r.Context(), "gateway unreachable", "tenant", tenant, "gateway", up.ID.String(), "err", err)
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				problem.Write(w, r, problem.Errorf(problem.ErrTooLarge, "request body too large"))
				return
			}
			problem.WriteDetails(w, problem.Details{Type: problem.TypeBase + "bad-gateway",
				Title: http.StatusText(http.StatusBadGateway), Status: http.StatusBadGateway, Instance: r.URL.Path})
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g, release, ok := e.admit(w, r, tenant, strings.TrimPrefix(r.URL.Path, prefix))
		if !ok {
			return
		}
		defer release()
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), grantKey{}, g)))
	})
}

// admit makes the checks every client request to a tenant passes, in this order, whichever
// front end (proxy or ext_authz) it came through: an internal route is refused before the
// token is looked at, the external token is exchanged, and the user's and the tenant's
// budgets are charged. rest is the path below the tenant. When ok is false a check has
// answered; otherwise the caller releases the concurrency slot when the request is done.
func (e *edge) admit(w http.ResponseWriter, r *http.Request, tenant, rest string) (g exchange.Grant, release func(), ok bool) {
	if e.refuseInternal(w, r, rest) {
		return exchange.Grant{}, nil, false
	}
	if g, ok = e.ex.Authorize(w, r, tenant); !ok {
		return exchange.Grant{}, nil, false
	}
	if release, ok = e.budget.admit(w, r, g.User.Tenant, g.User.ID.String()); !ok {
		return exchange.Grant{}, nil, false
	}
	return g, release, true
}

// refuseInternal answers 404 for a path below the tenant whose first segment is "internal"
// (any letter case): the services' diagnostic routes are not part of the public API, and
// the gateway's chain fans out to every backend. It is decided before the token is looked
// at, so it costs no exchange and says nothing about the caller.
func (e *edge) refuseInternal(w http.ResponseWriter, r *http.Request, rest string) bool {
	first, _, _ := strings.Cut(strings.TrimLeft(rest, "/"), "/")
	if !strings.EqualFold(first, "internal") {
		return false
	}
	e.log.WarnContext(r.Context(), "request refused", "reason", "internal route", "status", http.StatusNotFound,
		"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	problem.Write(w, r, problem.Refuse(problem.TypeEdge, problem.ErrNotFound, "no such route: internal routes are not public", nil))
	return true
}

func singleJoin(a, b string) string {
	if b == "" {
		b = "/"
	}
	return strings.TrimSuffix(a, "/") + b
}

// authz is the Emissary AuthService (HTTP ext_authz) endpoint. Emissary sends the client's
// method, headers and path appended to the prefix; 200 lets the request through with the
// headers we return copied onto it, anything else goes back to the client as is.
func (e *edge) authz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The answer carries an internal JWT: only the ingress may have one handed over.
		// A client with a valid external token goes through the proxy instead.
		if e.authzCaller == nil {
			e.refuseAuthz(w, r, errors.New("no ext_authz caller is configured"))
			return
		}
		if err := e.authzCaller(r); err != nil {
			e.refuseAuthz(w, r, err)
			return
		}
		rest := strings.TrimPrefix(r.URL.Path, e.authzPrefix+"/")
		tenant, _, _ := strings.Cut(rest, "/")
		if _, ok := e.upstreams[tenant]; !ok && !contains(e.tenants, tenant) {
			e.log.WarnContext(r.Context(), "request refused", "reason", "no such tenant", "status", http.StatusForbidden,
				"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			problem.Write(w, r, problem.Refuse(problem.TypeEdge, problem.ErrForbidden, "no such tenant", nil))
			return
		}
		// The rates apply to requests admitted through Emissary too; its requests' time in
		// flight is not seen here, so the concurrency slot is given back at once.
		g, release, ok := e.admit(w, r, tenant, strings.TrimPrefix(rest, tenant))
		if !ok {
			return
		}
		release()
		w.Header().Set(exchange.HeaderAuthorization, "Bearer "+g.Token.Raw)
		w.Header().Set(exchange.HeaderSpiffeID, g.User.ID.String())
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// limits refuses requests whose headers or declared body exceed the edge's limits before
// any token is parsed, and caps the body that is actually read.
func (e *edge) limits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size := len(r.Method) + len(r.RequestURI) + len(r.Proto)
		for k, vs := range r.Header {
			for _, v := range vs {
				size += len(k) + len(v) + 4
			}
		}
		if size > e.maxHeaderBytes {
			e.log.WarnContext(r.Context(), "request refused", "reason", "headers too large", "status",
				http.StatusRequestHeaderFieldsTooLarge, "bytes", size, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			problem.WriteDetails(w, problem.Details{Type: problem.TypeBase + "too-large",
				Title:  http.StatusText(http.StatusRequestHeaderFieldsTooLarge),
				Status: http.StatusRequestHeaderFieldsTooLarge, Detail: "request headers too large", Instance: r.URL.Path})
			return
		}
		if r.ContentLength > e.maxBodyBytes {
			e.log.WarnContext(r.Context(), "request refused", "reason", "body too large", "status",
				http.StatusRequestEntityTooLarge, "bytes", r.ContentLength, "method", r.Method, "path", r.URL.Path)
			problem.Write(w, r, problem.Errorf(problem.ErrTooLarge, "request body too large"))
			return
		}
		// The mux cleans dot segments only when they arrive unescaped; "%2e%2e" reaches the
		// handlers as ".." and would be proxied as is (found by FuzzTenantPath). No route has
		// one, so such a path is refused before the tenant is read from it.
		if hasDotSegment(r.URL.Path) {
			e.log.WarnContext(r.Context(), "request refused", "reason", "dot segment in path", "status",
				http.StatusBadRequest, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			problem.Write(w, r, problem.Refuse(problem.TypeEdge, problem.ErrBadRequest, "the path has a . or .. segment", nil))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, e.maxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// hasDotSegment reports whether the decoded path has a "." or ".." segment.
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func (e *edge) notFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.Refuse(problem.TypeNoRoute, problem.ErrNotFound, "no such route", nil))
	})
}

func (e *edge) unavailable(msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.Errorf(problem.ErrUnavailable, msg))
	})
}

// logWriter sends net/http's log lines to slog.
type logWriter struct{ log *slog.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.log.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (e *edge) refuseAuthz(w http.ResponseWriter, r *http.Request, err error) {
	e.log.WarnContext(r.Context(), "request refused", "reason", "ext_authz caller not allowed", "err", err.Error(),
		"status", http.StatusForbidden, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	problem.Write(w, r, problem.Refuse(problem.TypeEdge, problem.ErrForbidden, "the authorization endpoint answers the ingress only", nil))
}
