// Package oidctest runs a minimal OpenID provider on a loopback TLS socket for tests: a
// discovery document and a JWKS with RSA and ECDSA keys generated at start, and a Sign
// method that issues real signatures with them. It serves no login flow; tests that need one
// use the development provider. No key material exists outside the test process.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Provider is a running test provider.
type Provider struct {
	*httptest.Server
	RSA         *rsa.PrivateKey
	EC          *ecdsa.PrivateKey
	JWKSFetches atomic.Int64
}

// Key IDs of the published keys.
const (
	RSAKeyID = "rsa-1"
	ECKeyID  = "ec-1"
)

// Start runs a provider until the test ends. Its issuer is its URL.
func Start(t testing.TB) *Provider {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{RSA: rk, EC: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                p.URL,
			"authorization_endpoint":                p.URL + "/authorize",
			"token_endpoint":                        p.URL + "/token",
			"jwks_uri":                              p.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		p.JWKSFetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &rk.PublicKey, KeyID: RSAKeyID, Algorithm: "RS256", Use: "sig"},
			{Key: &ek.PublicKey, KeyID: ECKeyID, Algorithm: "ES256", Use: "sig"},
		}})
	})
	p.Server = httptest.NewTLSServer(mux)
	t.Cleanup(p.Close)
	return p
}

// Sign signs claims with alg using key under kid. Tests pass a key of their own to produce
// wrong signatures, and an unpublished kid for unknown-key cases.
func Sign(t testing.TB, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, claims any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// SignRS256 signs claims with the provider's RSA key.
func (p *Provider) SignRS256(t testing.TB, claims any) string {
	return Sign(t, jose.RS256, p.RSA, RSAKeyID, claims)
}

// SignES256 signs claims with the provider's ECDSA key.
func (p *Provider) SignES256(t testing.TB, claims any) string {
	return Sign(t, jose.ES256, p.EC, ECKeyID, claims)
}
