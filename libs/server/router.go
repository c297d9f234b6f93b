package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/telemetry"
	"github.com/ztbank/ztbank/libs/transport"
)

// MaxBodyBytes bounds every request body; banking requests are small, and an unbounded body
// is a memory-exhaustion vector.
const MaxBodyBytes = 64 << 10

// Router returns the service's chi router with the platform middleware in order: panic
// recovery, request logging, body limit, and caller identification against the topology's
// allowlist, then the authorisation audit (one line per request; routes nobody guarded are
// refused). Services add user-token verification and per-route permissions.
func (rt *Runtime) Router() chi.Router {
	r := chi.NewRouter()
	// Tracing and request metrics come first so refused requests are counted too; Annotate
	// puts the identity Identify proved on the span.
	// A tenant service serves one tenant (the topology gives each workload one), so its
	// slots are that tenant's: a flood of another tenant never reaches it, and its own
	// flood is refused at once instead of queueing behind the database pool.
	tenant := rt.Self.Tenant
	r.Use(telemetry.Server(), recoverer(rt.Log), rt.Tenants.Limit(func(*http.Request) string { return tenant }), limitBody,
		transport.Identify(rt.Env.Mode, rt.Topology.AllowedCallers(rt.Self.Name)), telemetry.Annotate,
		requestLog(rt.Log))
	if rt.Authz != nil {
		r.Use(rt.Authz.Audit)
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.Refuse(problem.TypeNoRoute, problem.ErrNotFound, "no such route", nil))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		problem.WriteDetails(w, problem.Details{Type: problem.TypeBase + "method-not-allowed",
			Title: http.StatusText(http.StatusMethodNotAllowed), Status: http.StatusMethodNotAllowed, Instance: r.URL.Path})
	})
	return r
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			problem.Write(w, r, problem.Errorf(problem.ErrTooLarge, fmt.Sprintf("body over %d bytes", MaxBodyBytes)))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "panic", "value", fmt.Sprint(v))
					problem.Write(w, r, fmt.Errorf("panic: %v", v))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// requestLog writes one line per request after it completes, with the route pattern (not
// the raw path, which may carry IDs) and the identity the handlers saw.
func requestLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			route := ""
			if rc := chi.RouteContext(r.Context()); rc != nil {
				route = rc.RoutePattern()
			}
			log.InfoContext(r.Context(), "request", "method", r.Method, "route", route,
				"status", ww.Status(), "duration_ms", float64(time.Since(start).Microseconds())/1000)
		})
	}
}

// WhoAmI reports the identity this service authenticated for the request: the peer
// workload and, if an internal JWT was verified, the user. It is the diagnostic route every
// service exposes to its allowed callers.
func (rt *Runtime) WhoAmI(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, rt.whoami(r))
}

// Diagnostics serves the two diagnostic routes every service exposes, WhoAmI at
// /internal/whoami and Chain(peers) at /internal/chain, under permission and for workloads
// only: a request that carries a verified user is refused (a bad token is still a 401).
func (rt *Runtime) Diagnostics(r chi.Router, permission string, peers []*Peer) {
	az := rt.Authz
	r.With(rt.OptionalUserToken, az.Require(permission, authz.WorkloadOnly())).Get("/internal/whoami", rt.WhoAmI)
	r.With(rt.OptionalUserToken, az.Require(permission, authz.WorkloadOnly())).Get("/internal/chain", rt.Chain(peers))
}

// Hop is one service's view of a request.
type Hop struct {
	Service  string `json:"service"`
	Workload string `json:"workload"`
	SpiffeID string `json:"spiffe_id"`
	Caller   string `json:"caller"`
	User     string `json:"user,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	Next     []Hop  `json:"next,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (rt *Runtime) whoami(r *http.Request) Hop {
	id := caller.From(r.Context())
	h := Hop{Service: rt.Self.Service, Workload: rt.Self.Name, SpiffeID: rt.Self.ID.String(), Caller: id.Workload.String()}
	if id.HasUser() {
		h.User, h.Tenant = id.User.ID.String(), id.User.Tenant
	}
	return h
}

// Chain reports this service's view and asks each workload it may call for theirs, over
// mTLS with this service's own SVID, forwarding the user's internal JWT. It shows every hop
// of the topology authenticating the one before it.
func (rt *Runtime) Chain(peers []*Peer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := rt.whoami(r)
		for _, p := range peers {
			next := Hop{Workload: p.Name}
			req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, p.BaseURL+"/internal/chain", nil)
			if err == nil {
				var resp *http.Response
				resp, err = p.Client.Do(req)
				if err == nil {
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					} else {
						err = json.Unmarshal(body, &next)
					}
				}
			}
			if err != nil {
				next.Error = err.Error()
			}
			h.Next = append(h.Next, next)
		}
		WriteJSON(w, http.StatusOK, h)
	}
}

// WriteJSON answers with v as JSON and the given status: the one JSON writer of every
// service's handlers (errors go through problem.Write). Responses carry account and user data
// for one caller, so no shared cache may keep them.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
