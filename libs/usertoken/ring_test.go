package usertoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/usertoken"
)

// staticRing is a key ring with one key, or none (err) when its view cannot be trusted.
type staticRing struct {
	kid string
	key *ecdsa.PrivateKey
	err error
}

func (r *staticRing) Signing() (string, *ecdsa.PrivateKey, error) { return r.kid, r.key, r.err }

func (r *staticRing) Published() (jose.JSONWebKeySet, error) {
	if r.err != nil {
		return jose.JSONWebKeySet{}, r.err
	}
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &r.key.PublicKey, KeyID: r.kid, Algorithm: "ES256", Use: "sig"}}}, nil
}

// TestIssuerWithKeyRing: tokens are signed with the ring's key and verify against the ring's
// published set; a ring that cannot vouch for its view makes minting fail and the JWKS
// answer 503, never an empty or partial key set.
func TestIssuerWithKeyRing(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ring := &staticRing{kid: "ring-key-1", key: priv}
	id := spiffeid.RequireFromString("spiffe://ztbank.local/ns/ztbank-system/sa/edge")
	iss, err := usertoken.NewIssuer(id, usertoken.WithKeyRing(ring))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(iss.JWKSHandler())
	defer srv.Close()
	user := spiffeid.RequireFromString("spiffe://bank-a/user/alice")
	raw, err := iss.Mint(context.Background(), usertoken.Claims{User: user, Tenant: "bank-a"})
	if err != nil {
		t.Fatal(err)
	}
	v := usertoken.NewVerifier(usertoken.NewRemoteKeys(srv.Client(), srv.URL), "bank-a", id)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("token signed with the ring's key: %v", err)
	}
	tok, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || tok.Signatures[0].Header.KeyID != "ring-key-1" {
		t.Fatalf("kid %v, %v; want the ring's", tok, err)
	}

	ring.err = fmt.Errorf("stale view: %w", usertoken.ErrNoKeys)
	if _, err := iss.Mint(context.Background(), usertoken.Claims{User: user, Tenant: "bank-a"}); err == nil {
		t.Error("minted with a ring that cannot sign")
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var body json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("JWKS from a ring that cannot vouch for its view: %d %s, want 503", resp.StatusCode, body)
	}
}
