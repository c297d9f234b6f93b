// Package devoidc is the local development OpenID Connect provider of the ztbank stack and
// the headless client that logs in through it.
//
// The provider is built on the OpenID-certified zitadel/oidc op package, so discovery, JWKS,
// authorization code with PKCE, refresh and client credentials are the library's protocol
// code, not ours; this package supplies only what a provider must own: users, clients,
// keys, in-memory state and a login form. It serves HTTPS on loopback with a certificate
// from the dev CA, so the edge verifies its tokens exactly as it would a hosted provider's:
// discovery, JWKS, issuer, audience, algorithm.
//
// Everything secret is generated at start-up: the signing key lives only in memory, and the
// demo users' passwords and the confidential client's secret are written, mode 0600, to
// the state directory for the developer and the test suites to read.
package devoidc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/ztbank/ztbank/devkit/devca"
)

// Defaults for Config fields left zero.
const (
	DefaultListen   = "127.0.0.1:0"
	DefaultAudience = "ztbank"
	// DefaultAccessTokenTTL is short because the edge accepts a token until it expires;
	// ten minutes bounds the use of a leaked one without making the demo tedious.
	DefaultAccessTokenTTL  = 10 * time.Minute
	DefaultRefreshTokenTTL = 8 * time.Hour
)

// Names of the files the provider writes to its state directory.
const (
	PasswordsFile = "passwords.json"
	// EnrolmentFile is the edge's enrolment table for the provider's users (EDGE_ENROLMENT).
	EnrolmentFile     = "enrolment.json"
	ClientSecretsFile = "client-secrets.json"
)

// Config configures a provider. StateDir and CA are required.
type Config struct {
	// Listen is the loopback address to serve on; the port may be 0.
	Listen string
	// StateDir receives passwords.json and client-secrets.json. It is created with mode
	// 0700 if missing. Keep it out of version control (the stack uses .dev/).
	StateDir string
	// CA issues the provider's TLS certificate; clients verify it with CA.Pool(). Required
	// unless Insecure.
	CA *devca.CA
	// Issuer overrides the issuer URL, which is otherwise https://<bound address>. Only
	// with Insecure: on loopback the bound address is the only name clients use.
	Issuer string
	// Insecure is for a provider inside a container network (docker-compose, kind), where
	// clients reach it by service name, the loopback-only dev CA cannot vouch for that name,
	// and the listener must accept other containers. It lifts the loopback restriction and,
	// with an http:// Issuer, serves plain HTTP. Never use it on a shared host: passwords
	// would cross the network in clear.
	Insecure bool
	// Audience is put in every access token's aud claim, for the edge to require.
	Audience string
	// Users can log in; nil means DemoUsers().
	Users []User
	// Algorithm signs the tokens: RS256 (default) or ES256.
	Algorithm string
	// AccessTokenTTL and RefreshTokenTTL bound the tokens' lifetimes.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	// Logger receives one line per login and per failure; nil discards.
	Logger *slog.Logger
}

// Provider is a running development OIDC provider.
type Provider struct {
	issuer     string
	pool       *x509.CertPool
	passwords  string
	secrets    string
	enrolment  string
	srv        *http.Server
	serveErr   chan error
	stopOnDone func() bool
	down       atomic.Bool
}

// SetDown makes the provider unreachable (true) or reachable again (false), for outage
// tests: while down, every request's connection is closed without an answer, as a dead or
// partitioned provider looks to its clients. Keys, clients and users are kept, so tokens it
// issued before stay valid and it comes back as the same provider.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// gate answers nothing while the provider is down.
func (p *Provider) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // HTTP/2: reset the stream
		}
		next.ServeHTTP(w, r)
	})
}

// Start generates the provider's keys and secrets, writes the secrets to cfg.StateDir and
// serves HTTPS on cfg.Listen until ctx is done or Close is called. The issuer URL is
// https://<listen address>, with the port actually bound.
func Start(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("devoidc: create state directory: %w", err)
	}
	key, err := newSigningKey(cfg.Algorithm)
	if err != nil {
		return nil, err
	}
	passwords := make(map[string]string, len(cfg.Users))
	for _, u := range cfg.Users {
		passwords[u.Username] = randomSecret()
	}
	serviceSecret := randomSecret()
	p := &Provider{
		passwords: filepath.Join(cfg.StateDir, PasswordsFile),
		secrets:   filepath.Join(cfg.StateDir, ClientSecretsFile),
		enrolment: filepath.Join(cfg.StateDir, EnrolmentFile),
		serveErr:  make(chan error, 1),
	}
	if cfg.CA != nil {
		p.pool = cfg.CA.Pool()
	}
	if err := writeSecrets(p.passwords, passwords); err != nil {
		return nil, err
	}
	if err := writeSecrets(p.secrets, map[string]string{ServiceClientID: serviceSecret}); err != nil {
		return nil, err
	}
	if err := WriteEnrolment(p.enrolment, cfg.Users); err != nil {
		return nil, err
	}
	store := newStorage(cfg, key, passwords,
		newCLIClient(cfg.AccessTokenTTL),
		newServiceClient(serviceSecret, cfg.AccessTokenTTL))

	var tlsConf *tls.Config
	if cfg.CA != nil {
		if tlsConf, err = cfg.CA.ServerTLSConfig(); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("devoidc: listen: %w", err)
	}
	p.issuer = cfg.Issuer
	if p.issuer == "" {
		p.issuer = "https://" + ln.Addr().String()
	}
	var opts []op.Option
	if strings.HasPrefix(p.issuer, "http://") {
		tlsConf = nil
		opts = append(opts, op.WithAllowInsecure())
	}

	var opConf = &op.Config{
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
		SupportedScopes:       []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess},
		SupportedClaims: []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "auth_time", "nonce", "amr",
			"azp", "client_id", "email", "email_verified", "preferred_username", "tenant", "roles"},
	}
	// op encrypts opaque tokens with this key; ours are JWTs, but it must not be guessable.
	rand.Read(opConf.CryptoKey[:])
	provider, err := op.NewProvider(opConf, store, op.StaticIssuer(p.issuer), append(opts, op.WithLogger(cfg.Logger))...)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("devoidc: create provider: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle(loginPath, &loginHandler{store: store, issuer: p.issuer, callbackURL: op.AuthCallbackURL(provider), log: cfg.Logger})
	mux.Handle("/", provider)
	p.srv = &http.Server{
		Handler:           p.gate(mux),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	go func() {
		var err error
		if tlsConf != nil {
			err = p.srv.ServeTLS(ln, "", "")
		} else {
			cfg.Logger.Warn("serving plain HTTP: tokens and passwords cross the network in clear", "issuer", p.issuer)
			err = p.srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		p.serveErr <- err
		close(p.serveErr)
	}()
	p.stopOnDone = context.AfterFunc(ctx, func() { p.Close() })
	cfg.Logger.Info("development OIDC provider started", "issuer", p.issuer, "alg", cfg.Algorithm,
		"audience", cfg.Audience, "passwords_file", p.passwords)
	return p, nil
}

func (cfg *Config) setDefaults() error {
	if cfg.StateDir == "" {
		return errors.New("devoidc: Config.StateDir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if !cfg.Insecure {
		if cfg.CA == nil {
			return errors.New("devoidc: Config.CA is required")
		}
		if cfg.Issuer != "" {
			return errors.New("devoidc: Config.Issuer is only for Insecure (container) mode")
		}
		if err := requireLoopback(cfg.Listen); err != nil {
			return err
		}
	} else {
		u, err := url.Parse(cfg.Issuer)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" {
			return fmt.Errorf("devoidc: Insecure mode needs an http(s)://host[:port] Config.Issuer, got %q", cfg.Issuer)
		}
		if u.Scheme == "https" && cfg.CA == nil {
			return errors.New("devoidc: an https issuer needs Config.CA")
		}
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.Users == nil {
		cfg.Users = DemoUsers()
	}
	if err := validateUsers(cfg.Users); err != nil {
		return err
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = RS256
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// requireLoopback refuses to serve beyond this machine: the provider logs anyone in who
// reads the passwords file, which is only acceptable where only the developer can connect.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("devoidc: listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("devoidc: listen address %q is not a loopback IP address", addr)
	}
	return nil
}

// Issuer returns the issuer URL, https://127.0.0.1:<port>.
func (p *Provider) Issuer() string { return p.issuer }

// Pool returns the roots a client needs to verify the provider's certificate; nil for a
// plain-HTTP provider.
func (p *Provider) Pool() *x509.CertPool { return p.pool }

// EnrolmentFile returns the path of the edge's enrolment table for the provider's users.
func (p *Provider) EnrolmentFile() string { return p.enrolment }

// PasswordsFile returns the path of the demo users' passwords (see ReadSecrets).
func (p *Provider) PasswordsFile() string { return p.passwords }

// ClientSecretsFile returns the path of the confidential clients' secrets (see ReadSecrets).
func (p *Provider) ClientSecretsFile() string { return p.secrets }

// Wait blocks until the provider has stopped and returns why, nil after Close.
func (p *Provider) Wait() error { return <-p.serveErr }

// Close stops the provider, letting requests in flight finish for up to five seconds.
func (p *Provider) Close() error {
	p.stopOnDone()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.srv.Shutdown(ctx)
}
