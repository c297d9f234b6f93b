package usertoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/ztbank/ztbank/libs/caller"
)

// allowedAlgs is the strict algorithm allowlist. Anything else, including "none" and every
// HMAC variant, is refused before a key is looked up.
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// Verifier checks internal tokens for one audience (the service's own tenant) from one
// issuer (the edge). A verified token is cached until its expiry, so each token costs one
// signature check per service, not one per request (DESIGN.md §10).
type Verifier struct {
	keys     KeySource
	audience string
	issuer   string
	opts     options

	mu    sync.RWMutex
	cache map[string]cached

	// hits and misses count Verify calls answered from the cache and calls that checked a
	// signature (successful or not), for CacheStats.
	hits, misses atomic.Uint64
}

// CacheStats returns how many Verify calls the verified-token cache answered and how many
// verified a signature, so a benchmark or a metric can report the hit rate.
func (v *Verifier) CacheStats() (hits, misses uint64) { return v.hits.Load(), v.misses.Load() }

type cached struct {
	user caller.User
	exp  time.Time
}

// NewVerifier returns a Verifier that accepts only tokens signed by a key from keys, issued by
// issuer and addressed to audience.
func NewVerifier(keys KeySource, audience string, issuer spiffeid.ID, opts ...Option) *Verifier {
	return &Verifier{
		keys:     keys,
		audience: audience,
		issuer:   issuer.String(),
		opts:     apply(opts),
		cache:    make(map[string]cached),
	}
}

// Audience returns the tenant the Verifier accepts tokens for.
func (v *Verifier) Audience() string { return v.audience }

// Verify checks raw and returns the user it names. Errors wrap one of the package's reasons.
func (v *Verifier) Verify(ctx context.Context, raw string) (caller.User, error) {
	if raw == "" {
		return caller.User{}, ErrMissing
	}
	now := v.opts.now()
	v.mu.RLock()
	c, hit := v.cache[raw]
	v.mu.RUnlock()
	if hit {
		v.hits.Add(1)
		countVerify(true)
		// The cache never extends a token's life: a replay past exp fails here as it would
		// on a fresh verification.
		if now.After(c.exp.Add(v.opts.leeway)) {
			v.mu.Lock()
			delete(v.cache, raw)
			v.mu.Unlock()
			return caller.User{}, fmt.Errorf("expired at %v: %w", c.exp, ErrExpired)
		}
		return c.user, nil
	}
	v.misses.Add(1)
	countVerify(false)
	u, exp, err := v.verify(ctx, raw, now)
	if err != nil {
		return caller.User{}, err
	}
	v.store(raw, cached{user: u, exp: exp}, now)
	return u, nil
}

func (v *Verifier) store(raw string, c cached, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.opts.cacheSize {
		for k, e := range v.cache {
			if now.After(e.exp.Add(v.opts.leeway)) {
				delete(v.cache, k)
			}
		}
		// Still full of live tokens: drop arbitrary ones (map order is random). They are only
		// re-verified, never wrongly accepted.
		for k := range v.cache {
			if len(v.cache) < v.opts.cacheSize {
				break
			}
			delete(v.cache, k)
		}
	}
	if v.opts.cacheSize > 0 {
		v.cache[raw] = c
	}
}

func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (caller.User, time.Time, error) {
	if len(raw) > MaxTokenBytes {
		return caller.User{}, time.Time{}, fmt.Errorf("%d bytes: %w", len(raw), ErrMalformed)
	}
	tok, err := jwt.ParseSigned(raw, allowedAlgs)
	if err != nil {
		if alg, ok := PeekAlgorithm(raw); ok && !slices.Contains(allowedAlgs, jose.SignatureAlgorithm(alg)) {
			return caller.User{}, time.Time{}, fmt.Errorf("alg %q: %w", alg, ErrAlgorithm)
		}
		return caller.User{}, time.Time{}, fmt.Errorf("%v: %w", err, ErrMalformed)
	}
	if len(tok.Headers) != 1 {
		return caller.User{}, time.Time{}, fmt.Errorf("%d signatures: %w", len(tok.Headers), ErrMalformed)
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != TokenType {
		return caller.User{}, time.Time{}, fmt.Errorf("typ %q: %w", typ, ErrMalformed)
	}
	key, err := v.keys.Key(ctx, h.KeyID)
	if err != nil {
		return caller.User{}, time.Time{}, fmt.Errorf("%w", wrapUnknown(err))
	}
	// A key published for one algorithm is never used with another.
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return caller.User{}, time.Time{}, fmt.Errorf("alg %q with %q key: %w", h.Algorithm, key.Algorithm, ErrAlgorithm)
	}
	var wc wireClaims
	if err := tok.Claims(key.Key, &wc); err != nil {
		return caller.User{}, time.Time{}, fmt.Errorf("%v: %w", err, ErrSignature)
	}
	if err := v.check(wc, now); err != nil {
		return caller.User{}, time.Time{}, err
	}
	sub, _ := spiffeid.FromString(wc.Subject) // parsed successfully in check
	return caller.User{
		ID:      sub,
		Tenant:  wc.Tenant,
		Roles:   wc.Roles,
		TokenID: wc.ID,
		Token:   raw,
	}, wc.Expiry.Time(), nil
}

func wrapUnknown(err error) error {
	if Reason(err) != nil {
		return err
	}
	return fmt.Errorf("%v: %w", err, ErrUnknownKey)
}

// check applies the claim rules of DESIGN.md §5 to a token whose signature is verified.
func (v *Verifier) check(wc wireClaims, now time.Time) error {
	leeway := v.opts.leeway
	switch {
	case wc.Issuer != v.issuer:
		return fmt.Errorf("iss %q: %w", wc.Issuer, ErrIssuer)
	case len(wc.Audience) != 1 || wc.Audience[0] != v.audience:
		return fmt.Errorf("aud %q, want %q: %w", []string(wc.Audience), v.audience, ErrAudience)
	case wc.Expiry == nil || wc.IssuedAt == nil:
		return fmt.Errorf("exp and iat are required: %w", ErrClaims)
	case now.After(wc.Expiry.Time().Add(leeway)):
		return fmt.Errorf("expired at %v: %w", wc.Expiry.Time(), ErrExpired)
	case wc.NotBefore != nil && now.Add(leeway).Before(wc.NotBefore.Time()):
		return fmt.Errorf("nbf %v: %w", wc.NotBefore.Time(), ErrNotYetValid)
	case now.Add(leeway).Before(wc.IssuedAt.Time()):
		return fmt.Errorf("iat %v: %w", wc.IssuedAt.Time(), ErrNotYetValid)
	case wc.Expiry.Time().Sub(wc.IssuedAt.Time()) > MaxTTL:
		return fmt.Errorf("lifetime over %v: %w", MaxTTL, ErrClaims)
	case wc.ID == "":
		return fmt.Errorf("jti is required: %w", ErrClaims)
	case wc.Tenant != v.audience:
		return fmt.Errorf("tenant %q: %w", wc.Tenant, ErrAudience)
	}
	sub, err := spiffeid.FromString(wc.Subject)
	if err != nil {
		return fmt.Errorf("sub: %v: %w", err, ErrClaims)
	}
	if err := CheckUser(sub, wc.Tenant); err != nil {
		return fmt.Errorf("sub: %v: %w", err, ErrClaims)
	}
	return nil
}

// PeekAlgorithm returns the alg of a compact JWS header without verifying anything. It
// exists to name the refusal reason precisely ("alg none") in logs; never decide on it.
func PeekAlgorithm(raw string) (string, bool) {
	head, _, ok := strings.Cut(raw, ".")
	if !ok || len(head) > 1024 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return "", false
	}
	return h.Alg, true
}
