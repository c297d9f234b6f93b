// Package usertoken mints and verifies the internal user JWT: the short-lived, asymmetric
// token the edge issues after it has verified a client's external OIDC token, and that every
// service verifies again before it trusts the user it names (DESIGN.md §5).
//
// The edge holds an Issuer. Every other workload holds a Verifier fed by RemoteKeys, which
// fetches the edge's JWKS over mTLS, and wraps its handlers in Middleware, which puts the
// verified caller.User into the request context beside the peer workload identity.
package usertoken

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxTTL caps the lifetime of an internal token. Issuers refuse to mint longer ones and
// verifiers refuse to accept them, so a stolen token is useless within minutes.
const MaxTTL = 5 * time.Minute

// MaxTokenBytes bounds the size of a token a verifier will parse. Internal tokens are a few
// hundred bytes; anything far larger is an attack on the parser, not a credential.
const MaxTokenBytes = 8 << 10

// TokenType is the JOSE "typ" header of internal tokens. Verifiers require it so that no
// other JWT signed by a key the service happens to trust can be replayed as a user token
// (explicit typing, RFC 8725 §3.11).
const TokenType = "ztbank-user+jwt"

// Reasons a token is refused. Verify wraps exactly one of them, so callers can log why with
// errors.Is and show the client the short reason without internals.
var (
	ErrMissing     = errors.New("no user token")
	ErrMalformed   = errors.New("malformed user token")
	ErrAlgorithm   = errors.New("signature algorithm not allowed")
	ErrUnknownKey  = errors.New("unknown signing key")
	ErrSignature   = errors.New("invalid signature")
	ErrExpired     = errors.New("user token expired")
	ErrNotYetValid = errors.New("user token not yet valid")
	ErrIssuer      = errors.New("wrong issuer")
	ErrAudience    = errors.New("wrong audience")
	ErrClaims      = errors.New("invalid claims")
)

var reasons = []error{ErrMissing, ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrSignature,
	ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrClaims}

// Reason returns the refusal reason err wraps, or nil when err is not a refusal. Its message
// is safe to show to a client: it names the check that failed, never the token or the keys.
func Reason(err error) error {
	for _, r := range reasons {
		if errors.Is(err, r) {
			return r
		}
	}
	return nil
}

// Claims is what an internal token says about its user.
type Claims struct {
	// User is the user's SPIFFE ID, spiffe://<tenant>/user/<id>.
	User spiffeid.ID
	// Tenant is the tenant the user is enrolled in; it is also the token's audience.
	Tenant string
	// Roles are the user's roles within Tenant.
	Roles []string
	// NotAfter is the expiry of the external token the internal one was exchanged for. The
	// internal token never outlives it; zero means no bound beyond MaxTTL.
	NotAfter time.Time
}

// Token is a minted internal token with the facts a caller needs to cache it.
type Token struct {
	Raw    string
	ID     string // jti
	Expiry time.Time
}

// wireClaims is the JSON payload: the registered claims plus ours.
type wireClaims struct {
	jwt.Claims
	Tenant string   `json:"tenant"`
	Roles  []string `json:"roles,omitempty"`
}

// UserID returns the SPIFFE ID of user id in tenant after checking both against the SPIFFE
// path rules, so that an identifier from an enrolment table or a claim can never smuggle a
// second path segment or a different trust domain into the ID.
func UserID(tenant, id string) (spiffeid.ID, error) {
	td, err := spiffeid.TrustDomainFromString(tenant)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("tenant %q: %w", tenant, err)
	}
	if id == "" || strings.Contains(id, "/") {
		return spiffeid.ID{}, fmt.Errorf("user id %q: must be one non-empty path segment", id)
	}
	uid, err := spiffeid.FromSegments(td, "user", id)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("user id %q: %w", id, err)
	}
	return uid, nil
}

// CheckUser reports whether id has the user form spiffe://<tenant>/user/<id> for tenant.
func CheckUser(id spiffeid.ID, tenant string) error {
	if id.IsZero() {
		return errors.New("empty user id")
	}
	if id.TrustDomain().Name() != tenant {
		return fmt.Errorf("user %s is not in tenant %q", id, tenant)
	}
	rest, ok := strings.CutPrefix(id.Path(), "/user/")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return fmt.Errorf("user %s: path must be /user/<id>", id)
	}
	return nil
}
