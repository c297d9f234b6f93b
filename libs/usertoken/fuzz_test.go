package usertoken

import (
	"context"
	"errors"
	"testing"
)

// FuzzVerify feeds arbitrary strings to the verifier. Nothing may panic, every refusal must
// carry a reason, and nothing but a token the issuer really minted may be accepted.
func FuzzVerify(f *testing.F) {
	clk := newClock()
	iss := newIssuer(f, clk)
	v := NewVerifier(iss, "bank-a", edgeID, WithClock(clk.Now), WithCacheSize(0))
	good := mint(f, iss, alice)
	f.Add(good)
	f.Add(mint(f, iss, bob))
	f.Add("")
	f.Add("a.b.c")
	f.Add(b64(`{"alg":"none"}`) + ".e30.")
	f.Add(b64(`{"alg":"HS256","kid":"x","typ":"ztbank-user+jwt"}`) + ".e30.c2ln")
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := v.Verify(context.Background(), raw)
		if err != nil {
			if Reason(err) == nil {
				t.Fatalf("Verify(%q) error %v carries no reason", raw, err)
			}
			return
		}
		if raw != good && u.ID != aliceID {
			t.Fatalf("Verify accepted a token the issuer did not mint: %q", raw)
		}
	})
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
