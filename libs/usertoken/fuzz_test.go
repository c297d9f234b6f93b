package usertoken

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/caller"
)

// FuzzVerify feeds arbitrary strings to the verifier. Nothing may panic, every refusal must
// carry a reason, and whatever is accepted must be, claim for claim and kid for kid, a token
// the issuer minted: a forged token that names alice, a re-signed payload or a swapped kid
// all fail this property, not only strings that differ from the original.
func FuzzVerify(f *testing.F) {
	clk := newClock()
	iss := newIssuer(f, clk)
	v := NewVerifier(iss, "bank-a", edgeID, WithClock(clk.Now), WithCacheSize(0))
	minted := map[string]mintedToken{}
	for _, c := range []Claims{alice, bob, {User: aliceID, Tenant: "bank-a", Roles: []string{"staff"}}} {
		raw := mint(f, iss, c)
		minted[raw] = decodeMinted(f, raw)
		f.Add(raw)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add(b64(`{"alg":"none"}`) + ".e30.")
	f.Add(b64(`{"alg":"HS256","kid":"x","typ":"ztbank-user+jwt"}`) + ".e30.c2ln")
	f.Fuzz(func(t *testing.T, raw string) {
		if err := acceptsOnlyMinted(v, minted, raw); err != nil {
			t.Fatal(err)
		}
	})
}

// acceptsOnlyMinted is FuzzVerify's property for one input: nil when raw is refused with a
// reason, or accepted as exactly one of the minted tokens.
func acceptsOnlyMinted(v *Verifier, minted map[string]mintedToken, raw string) error {
	u, err := v.Verify(context.Background(), raw)
	if err != nil {
		if Reason(err) == nil {
			return fmt.Errorf("Verify(%q) error %v carries no reason", raw, err)
		}
		return nil
	}
	got, err := decodeToken(raw)
	if err != nil {
		return fmt.Errorf("Verify accepted %q, which does not even decode: %v", raw, err)
	}
	var match *mintedToken
	for _, m := range minted {
		if cmp.Equal(m, got) {
			match = &m
			break
		}
	}
	if match == nil {
		return fmt.Errorf("Verify accepted a token whose claims or kid no minted token has: %+v", got)
	}
	// What the service acts on is exactly what was minted.
	want := caller.User{ID: spiffeid.RequireFromString(match.Claims["sub"].(string)), Tenant: match.Claims["tenant"].(string),
		Roles: rolesOf(match.Claims), TokenID: match.Claims["jti"].(string)}
	if diff := cmp.Diff(want, u, compareIDs, cmpopts.IgnoreFields(caller.User{}, "Token")); diff != "" {
		return fmt.Errorf("Verify returned a user other than the minted one (-want +got):\n%s", diff)
	}
	return nil
}

// TestFuzzVerifyPropertyCatchesForgery keeps the property honest: a token naming alice,
// validly signed with the issuer's own key but never minted (another jti, a later expiry),
// must violate it, while the minted token satisfies it.
func TestFuzzVerifyPropertyCatchesForgery(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, clk)
	signerKey(t, iss) // the test knows the current key from here on
	v := NewVerifier(iss, "bank-a", edgeID, WithClock(clk.Now), WithCacheSize(0))
	good := mint(t, iss, alice)
	minted := map[string]mintedToken{good: decodeMinted(t, good)}
	if err := acceptsOnlyMinted(v, minted, good); err != nil {
		t.Fatalf("the minted token fails the property: %v", err)
	}
	forged := validWire(clk.Now())
	forged.ID = "forged-jti"
	raw := signRaw(t, iss, forged, TokenType)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("the forged token must pass Verify for this check to mean anything: %v", err)
	}
	if err := acceptsOnlyMinted(v, minted, raw); err == nil {
		t.Error("a validly signed token naming alice that was never minted satisfies the property")
	}
}

// mintedToken is the part of a token the property compares: every payload claim and the
// signing key's ID.
type mintedToken struct {
	Kid    string
	Claims map[string]any
}

func decodeMinted(t testing.TB, raw string) mintedToken {
	t.Helper()
	m, err := decodeToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// decodeToken reads kid and claims without verifying: the fuzz property checks them against
// the minted set, the verifier already checked the signature.
func decodeToken(raw string) (mintedToken, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return mintedToken{}, err
	}
	if len(tok.Headers) != 1 {
		return mintedToken{}, errors.New("not one signature")
	}
	claims := map[string]any{}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return mintedToken{}, err
	}
	return mintedToken{Kid: tok.Headers[0].KeyID, Claims: claims}, nil
}

func rolesOf(claims map[string]any) []string {
	var out []string
	rs, _ := claims["roles"].([]any)
	for _, r := range rs {
		out = append(out, r.(string))
	}
	return out
}

// FuzzParseKeySet checks that a hostile JWKS document never yields a private or symmetric
// key and never panics.
func FuzzParseKeySet(f *testing.F) {
	clk := newClock()
	iss := newIssuer(f, clk)
	rec := jwksBytes(f, iss)
	f.Add(rec)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`))
	f.Add([]byte(`{"keys":[null,{},{"kty":"EC"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseKeySet(b)
		if err != nil {
			return
		}
		for kid, k := range keys {
			if !k.IsPublic() || kid == "" {
				t.Fatalf("ParseKeySet kept non-public key %q", kid)
			}
		}
	})
}

// FuzzPeekAlgorithm guards the header peek used for refusal reasons.
func FuzzPeekAlgorithm(f *testing.F) {
	f.Add(b64(`{"alg":"ES256"}`) + ".x.y")
	f.Add("....")
	f.Fuzz(func(t *testing.T, raw string) {
		_, _ = PeekAlgorithm(raw)
	})
}

func TestReason(t *testing.T) {
	if Reason(errors.New("other")) != nil {
		t.Error("Reason(unrelated) != nil")
	}
}
