// Package web is the console's HTTP side: one page with the topology diagram (hover a
// workload for its routes and the permission each needs), the live stream of authorisation
// decisions over server-sent events, and the isolation matrix of the last e2e run.
//
// Everything sits behind one random token, printed once at start: the first request carries
// it in the URL, gets it back as an HttpOnly cookie and is redirected to a URL without it.
// The console shows only what the services' audit lines and route tables already publish;
// it reads no token, password or key, and holds none but its own access token (ADR 0970).
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/console/audit"
	"github.com/ztbank/ztbank/tools/console/diagram"
)

//go:embed static
var staticRoot embed.FS

// CookieName is the session cookie that carries the token after the first request.
const CookieName = "ztbank_console"

// Config is what the console shows and where it reads it from.
type Config struct {
	Topology *topology.Topology
	// LogFiles are the services' log files, where their audit lines are.
	LogFiles []string
	// Health maps workload name to its plain health address (host:port), where the service
	// publishes its route table and each route's permission.
	Health map[string]string
	// MatrixHTML is the isolation matrix the e2e suite last wrote (docs/isolation-matrix.html).
	MatrixHTML string
	// JaegerURL, when set (OBS=1), turns trace IDs into links to Jaeger's trace view.
	JaegerURL string
	// Token guards every request; NewToken makes one.
	Token string
	// Poll is how often the log files are checked for new lines; default 100 ms.
	Poll time.Duration
	// Backlog is how many recent decisions a new page receives first; default 500.
	Backlog int
	// OnBadLine, if set, hears about audit lines that failed the strict parser.
	OnBadLine func(path string, err error)
}

// NewToken returns 32 random bytes, base64url-encoded: the console's access token.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("console token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Console serves the page and streams decisions. Run must be running for the stream to move.
type Console struct {
	cfg       Config
	tokenHash [32]byte
	hub       *hub
	routes    *routeCache
	svg       []byte
	static    fs.FS
}

// New checks cfg and prepares the console.
func New(cfg Config) (*Console, error) {
	if cfg.Topology == nil {
		return nil, errors.New("console: no topology")
	}
	if len(cfg.Token) < 32 {
		return nil, errors.New("console: the access token must be at least 32 characters")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = 500
	}
	if cfg.JaegerURL != "" {
		u, err := url.Parse(cfg.JaegerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("console: Jaeger URL %q is not an http(s) URL", cfg.JaegerURL)
		}
	}
	st, err := fs.Sub(staticRoot, "static")
	if err != nil {
		return nil, err
	}
	return &Console{cfg: cfg, tokenHash: sha256.Sum256([]byte(cfg.Token)), hub: newHub(cfg.Backlog),
		routes: newRouteCache(cfg.Topology, cfg.Health), svg: diagram.SVG(cfg.Topology), static: st}, nil
}

// Run follows the services' logs and feeds the stream until ctx is done.
func (c *Console) Run(ctx context.Context) {
	audit.Follow(ctx, c.cfg.LogFiles, c.cfg.Poll, func(d audit.Decision) {
		c.hub.publish(c.event(d))
	}, c.cfg.OnBadLine)
}

// Handler returns the console's routes, all behind the token.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.serveStatic("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /app.js", c.serveStatic("app.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("GET /app.css", c.serveStatic("app.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /topology.svg", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Write(c.svg)
	})
	mux.HandleFunc("GET /api/info", c.info)
	mux.HandleFunc("GET /api/routes", c.serveRoutes)
	mux.HandleFunc("GET /api/events", c.hub.serveSSE)
	mux.HandleFunc("GET /matrix", c.matrix)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.Errorf(problem.ErrNotFound, "the console has no such page"))
	})
	return c.guard(securityHeaders(mux))
}

// guard admits a request that carries the token in its cookie, or in the URL once: then the
// token is set as a cookie and the browser is sent to the same URL without it, so it leaves
// the address bar and the history.
func (c *Console) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query(); q.Has("token") {
			if !c.validToken(q.Get("token")) {
				unauthorised(w, r)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: CookieName, Value: q.Get("token"), Path: "/", HttpOnly: true,
				Secure: true, SameSite: http.SameSiteStrictMode})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			w.Header().Set("Referrer-Policy", "no-referrer")
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		ck, err := r.Cookie(CookieName)
		if err != nil || !c.validToken(ck.Value) {
			unauthorised(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// validToken compares digests in constant time, so neither the token's content nor its
// length leaks through response timing.
func (c *Console) validToken(s string) bool {
	h := sha256.Sum256([]byte(s))
	return subtle.ConstantTimeCompare(h[:], c.tokenHash[:]) == 1
}

func unauthorised(w http.ResponseWriter, r *http.Request) {
	problem.Write(w, r, problem.Errorf(problem.ErrUnauthenticated,
		"open the console with the URL it printed at start; that URL carries its access token"))
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The page loads only its own script and style; the matrix is framed by the console
		// itself and by nothing else.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (c *Console) serveStatic(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(c.static, name)
		if err != nil {
			problem.Write(w, r, fmt.Errorf("console page %s: %w", name, err))
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Write(b)
	}
}

// info tells the page what it needs to draw: the workloads and calls (for hover and the
// filters), the tenants, and whether trace IDs link to Jaeger.
func (c *Console) info(w http.ResponseWriter, r *http.Request) {
	type workload struct {
		Name     string   `json:"name"`
		Tenant   string   `json:"tenant"`
		SpiffeID string   `json:"spiffe_id"`
		Calls    []string `json:"calls"`
		Callers  []string `json:"callers"`
		External bool     `json:"external"`
	}
	out := struct {
		TrustDomain string     `json:"trust_domain"`
		Tenants     []string   `json:"tenants"`
		Workloads   []workload `json:"workloads"`
		Jaeger      bool       `json:"jaeger"`
		Matrix      string     `json:"matrix_written,omitempty"`
	}{TrustDomain: c.cfg.Topology.TrustDomain.Name(), Jaeger: c.cfg.JaegerURL != ""}
	for _, t := range c.cfg.Topology.Tenants {
		out.Tenants = append(out.Tenants, t.Name)
	}
	for _, wl := range c.cfg.Topology.Workloads {
		var callers []string
		for _, id := range c.cfg.Topology.AllowedCallers(wl.Name) {
			if cw, ok := c.cfg.Topology.WorkloadByID(id); ok {
				callers = append(callers, cw.Name)
			}
		}
		out.Workloads = append(out.Workloads, workload{Name: wl.Name, Tenant: wl.Tenant, SpiffeID: wl.ID.String(),
			Calls: append([]string{}, wl.Calls...), Callers: append([]string{}, callers...), External: wl.External})
	}
	if st, err := os.Stat(c.cfg.MatrixHTML); err == nil {
		out.Matrix = st.ModTime().UTC().Format(time.RFC3339)
	}
	writeJSON(w, out)
}

func (c *Console) serveRoutes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, c.routes.get(r.Context()))
}

// matrix serves the isolation matrix the e2e suite last wrote, as it wrote it: each cell
// already names the outcome and the layer that refused.
func (c *Console) matrix(w http.ResponseWriter, r *http.Request) {
	b, err := os.ReadFile(c.cfg.MatrixHTML)
	if err != nil {
		problem.Write(w, r, problem.Errorf(problem.ErrNotFound, "no isolation matrix yet: run `make e2e`"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}
