// Package extoken verifies the external OAuth2/OIDC access tokens clients present at the
// edge. It accepts only configured issuers, finds their keys by OIDC discovery and JWKS, and
// checks signature, algorithm (RS256 or ES256 only), audience and the time claims with a small
// clock skew. Nothing in a token is trusted before its signature verifies, except the issuer
// name used to pick which keys to try.
package extoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ztbank/ztbank/libs/usertoken"
)

// Reasons a token is refused. Verify wraps exactly one, so the caller can log it and show
// the client which check failed without internals.
var (
	ErrMissing     = errors.New("no bearer token")
	ErrTooLarge    = errors.New("token too large")
	ErrMalformed   = errors.New("malformed token")
	ErrAlgorithm   = errors.New("signature algorithm not allowed")
	ErrIssuer      = errors.New("issuer not accepted")
	ErrUnknownKey  = errors.New("unknown signing key")
	ErrSignature   = errors.New("invalid signature")
	ErrAudience    = errors.New("wrong audience")
	ErrExpired     = errors.New("token expired")
	ErrNotYetValid = errors.New("token not yet valid")
	ErrClaims      = errors.New("invalid claims")
	// ErrUnavailable means the issuer's discovery document or keys could not be fetched:
	// the token may be fine, the edge just cannot tell yet.
	ErrUnavailable = errors.New("issuer unavailable")
)

var reasons = []error{ErrMissing, ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrIssuer, ErrUnknownKey,
	ErrSignature, ErrAudience, ErrExpired, ErrNotYetValid, ErrClaims, ErrUnavailable}

// Reason returns the refusal reason err wraps, or nil.
func Reason(err error) error {
	for _, r := range reasons {
		if errors.Is(err, r) {
			return r
		}
	}
	return nil
}

// MaxTokenBytes bounds the tokens the edge parses. Real access tokens are one to two
// kilobytes; the limit leaves room for large role lists and nothing more.
const MaxTokenBytes = 8 << 10

// Algorithms is the allowlist of external signature algorithms (DESIGN.md §5).
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// Token is a verified external token.
type Token struct {
	Issuer  string
	Subject string
	Expiry  time.Time
	// Claims holds every claim of the payload, for mapping to a tenant and user.
	Claims map[string]any
}

// Verifier checks external tokens from a fixed set of issuers for one audience.
type Verifier struct {
	audience string
	client   *http.Client
	now      func() time.Time
	leeway   time.Duration
	retry    time.Duration
	refetch  time.Duration
	log      *slog.Logger
	issuers  map[string]*issuer
}

// issuer is one accepted issuer whose keys are discovered on first use, so the edge starts
// even when the provider is not up yet.
type issuer struct {
	url string

	mu    sync.Mutex
	keys  usertoken.KeySource
	tried time.Time
	err   error
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithClock replaces time.Now.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// WithLeeway sets the clock skew tolerated on exp, nbf and iat. Default 30s.
func WithLeeway(d time.Duration) Option { return func(v *Verifier) { v.leeway = d } }

// WithRefetchInterval sets the minimum time between JWKS refetches triggered by unknown
// kids. Default 10s.
func WithRefetchInterval(d time.Duration) Option { return func(v *Verifier) { v.refetch = d } }

// WithLogger sets where fetch failures are logged.
func WithLogger(l *slog.Logger) Option { return func(v *Verifier) { v.log = l } }

// New returns a Verifier accepting tokens from issuers (exact issuer URLs) addressed to
// audience. client fetches discovery documents and keys; it must trust the providers' TLS.
func New(issuers []string, audience string, client *http.Client, opts ...Option) (*Verifier, error) {
	if audience == "" {
		return nil, errors.New("extoken: audience is required")
	}
	if len(issuers) == 0 {
		return nil, errors.New("extoken: at least one issuer is required")
	}
	v := &Verifier{
		audience: audience, client: client, now: time.Now, leeway: 30 * time.Second,
		retry: 5 * time.Second, refetch: 10 * time.Second, log: slog.Default(),
		issuers: make(map[string]*issuer),
	}
	for _, o := range opts {
		o(v)
	}
	for _, u := range issuers {
		if u == "" {
			return nil, errors.New("extoken: empty issuer URL")
		}
		v.issuers[u] = &issuer{url: u}
	}
	return v, nil
}

// Verify checks raw and returns its claims. Errors wrap one of the package's reasons.
func (v *Verifier) Verify(ctx context.Context, raw string) (Token, error) {
	if raw == "" {
		return Token{}, ErrMissing
	}
	if len(raw) > MaxTokenBytes {
		return Token{}, fmt.Errorf("%d bytes: %w", len(raw), ErrTooLarge)
	}
	tok, err := jwt.ParseSigned(raw, Algorithms)
	if err != nil {
		if alg, ok := usertoken.PeekAlgorithm(raw); ok && !slices.Contains(Algorithms, jose.SignatureAlgorithm(alg)) {
			return Token{}, fmt.Errorf("alg %q: %w", alg, ErrAlgorithm)
		}
		return Token{}, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	if len(tok.Headers) != 1 {
		return Token{}, fmt.Errorf("%d signatures: %w", len(tok.Headers), ErrMalformed)
	}
	h := tok.Headers[0]

	// The issuer is read before verification only to choose whose keys to try; a forged
	// iss then fails the signature check against that issuer's keys.
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Token{}, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	iss, ok := v.issuers[unverified.Issuer]
	if !ok {
		return Token{}, fmt.Errorf("iss %q: %w", unverified.Issuer, ErrIssuer)
	}
	keys, err := v.keysOf(ctx, iss)
	if err != nil {
		return Token{}, err
	}
	key, err := keys.Key(ctx, h.KeyID)
	if err != nil {
		return Token{}, fmt.Errorf("kid %q: %v: %w", h.KeyID, err, ErrUnknownKey)
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return Token{}, fmt.Errorf("alg %q with a %q key: %w", h.Algorithm, key.Algorithm, ErrAlgorithm)
	}
	var std jwt.Claims
	all := map[string]any{}
	if err := tok.Claims(key.Key, &std, &all); err != nil {
		return Token{}, fmt.Errorf("%v: %w", err, ErrSignature)
	}
	if err := v.check(std); err != nil {
		return Token{}, err
	}
	return Token{Issuer: std.Issuer, Subject: std.Subject, Expiry: std.Expiry.Time(), Claims: all}, nil
}

func (v *Verifier) check(c jwt.Claims) error {
	now := v.now()
	switch {
	case !c.Audience.Contains(v.audience):
		return fmt.Errorf("aud %q, want %q: %w", []string(c.Audience), v.audience, ErrAudience)
	case c.Expiry == nil:
		return fmt.Errorf("exp is required: %w", ErrClaims)
	case now.After(c.Expiry.Time().Add(v.leeway)):
		return fmt.Errorf("expired at %v: %w", c.Expiry.Time(), ErrExpired)
	case c.NotBefore != nil && now.Add(v.leeway).Before(c.NotBefore.Time()):
		return fmt.Errorf("nbf %v: %w", c.NotBefore.Time(), ErrNotYetValid)
	case c.IssuedAt != nil && now.Add(v.leeway).Before(c.IssuedAt.Time()):
		return fmt.Errorf("iat %v: %w", c.IssuedAt.Time(), ErrNotYetValid)
	case c.Subject == "":
		return fmt.Errorf("sub is required: %w", ErrClaims)
	}
	return nil
}

// keysOf returns the issuer's key source, running OIDC discovery on first use. A failed
// discovery is retried at most once per retry interval so a down provider is not hammered
// by every request.
func (v *Verifier) keysOf(ctx context.Context, iss *issuer) (usertoken.KeySource, error) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if iss.keys != nil {
		return iss.keys, nil
	}
	now := v.now()
	if !iss.tried.IsZero() && now.Sub(iss.tried) < v.retry {
		return nil, fmt.Errorf("%s: %v: %w", iss.url, iss.err, ErrUnavailable)
	}
	iss.tried = now
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, v.client), 5*time.Second)
	defer cancel()
	// go-oidc fetches the discovery document and checks that its issuer equals the URL we
	// configured, which stops a provider from vouching for another issuer's name.
	p, err := oidc.NewProvider(dctx, iss.url)
	if err != nil {
		iss.err = err
		v.log.WarnContext(ctx, "oidc discovery failed", "issuer", iss.url, "err", err)
		return nil, fmt.Errorf("discover %s: %v: %w", iss.url, err, ErrUnavailable)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		iss.err = fmt.Errorf("discovery document has no jwks_uri")
		return nil, fmt.Errorf("%s: %v: %w", iss.url, iss.err, ErrUnavailable)
	}
	iss.keys = usertoken.NewRemoteKeys(v.client, meta.JWKSURI,
		usertoken.WithClock(v.now), usertoken.WithRefetch(v.refetch, 15*time.Minute), usertoken.WithLogger(v.log))
	return iss.keys, nil
}
