package extoken_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/services/edge/extoken"
	"github.com/ztbank/ztbank/services/edge/internal/oidctest"
)

func claims(p *oidctest.Provider, now time.Time) map[string]any {
	return map[string]any{"iss": p.URL, "aud": "ztbank", "sub": "u1", "email": "alice@bank-a",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
}

func TestVerifyAcceptsBothAlgorithms(t *testing.T) {
	p := oidctest.Start(t)
	v, err := extoken.New([]string{p.URL}, "ztbank", p.Client())
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]string{
		"RS256": p.SignRS256(t, claims(p, time.Now())),
		"ES256": p.SignES256(t, claims(p, time.Now())),
	} {
		tok, err := v.Verify(context.Background(), raw)
		if err != nil {
			t.Errorf("%s: Verify() = %v", name, err)
			continue
		}
		if tok.Subject != "u1" || tok.Claims["email"] != "alice@bank-a" {
			t.Errorf("%s: Verify() = %+v", name, tok)
		}
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	p := oidctest.Start(t)
	now := time.Now()
	v, err := extoken.New([]string{p.URL}, "ztbank", p.Client(), extoken.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), p.SignRS256(t, claims(p, now))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		raw := oidctest.Sign(t, jose.ES256, p.EC, "invented", claims(p, now))
		if _, err := v.Verify(context.Background(), raw); !errors.Is(err, extoken.ErrUnknownKey) {
			t.Fatalf("Verify(unknown kid) = %v, want ErrUnknownKey", err)
		}
	}
	// One fetch at first use, at most one more for the burst of invented kids.
	if n := p.JWKSFetches.Load(); n > 2 {
		t.Errorf("JWKS fetched %d times for 20 unknown kids, want at most 2", n)
	}
}

func TestIssuerDownIsUnavailableNotInvalid(t *testing.T) {
	p := oidctest.Start(t)
	url := p.URL
	raw := p.SignRS256(t, claims(p, time.Now()))
	p.Close()
	v, err := extoken.New([]string{url}, "ztbank", p.Client())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, extoken.ErrUnavailable) {
		t.Errorf("Verify() with the provider down = %v, want ErrUnavailable", err)
	}
}

// FuzzVerify feeds arbitrary strings to the external token verifier, backed by a real
// provider on loopback. Nothing may panic, every refusal must carry a reason, and whatever is
// accepted must carry exactly the claims and kid of a token the provider signed: a token
// signed by the provider's key but never issued (another subject, a later expiry) fails the
// property, not only strings that differ from the seeds.
func FuzzVerify(f *testing.F) {
	p := oidctest.Start(f)
	now := time.Now()
	v, err := extoken.New([]string{p.URL}, "ztbank", p.Client(), extoken.WithClock(func() time.Time { return now }),
		extoken.WithRefetchInterval(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	minted := map[string]issuedToken{}
	for _, raw := range []string{p.SignES256(f, claims(p, now)), p.SignRS256(f, claims(p, now)),
		p.SignRS256(f, with(claims(p, now), "sub", "u2"))} {
		minted[raw] = decodeIssued(f, raw)
		f.Add(raw)
	}
	for _, s := range []string{"", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if err := acceptsOnlyIssued(v, minted, raw); err != nil {
			t.Fatal(err)
		}
	})
}

// issuedToken is what FuzzVerify's property compares: the signing key's ID and every claim.
type issuedToken struct {
	Kid    string
	Claims map[string]any
}

func decodeIssued(t testing.TB, raw string) issuedToken {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, extoken.Algorithms)
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{}
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	return issuedToken{Kid: tok.Headers[0].KeyID, Claims: c}
}

func with(c map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range c {
		out[kk] = vv
	}
	out[k] = v
	return out
}

// acceptsOnlyIssued is FuzzVerify's property for one input.
func acceptsOnlyIssued(v *extoken.Verifier, issued map[string]issuedToken, raw string) error {
	tok, err := v.Verify(context.Background(), raw)
	if err != nil {
		if extoken.Reason(err) == nil {
			return fmt.Errorf("Verify(%q) = %v: no reason", raw, err)
		}
		return nil
	}
	parsed, err := jwt.ParseSigned(raw, extoken.Algorithms)
	if err != nil || len(parsed.Headers) != 1 {
		return fmt.Errorf("accepted %q, which does not parse as one signed JWT: %v", raw, err)
	}
	got := issuedToken{Kid: parsed.Headers[0].KeyID, Claims: tok.Claims}
	for _, want := range issued {
		if cmp.Equal(want, got) {
			if tok.Subject != want.Claims["sub"] || tok.Issuer != want.Claims["iss"] ||
				tok.Expiry.Unix() != int64(want.Claims["exp"].(float64)) {
				return fmt.Errorf("accepted token's subject/issuer/expiry %q %q %v differ from its claims %v",
					tok.Subject, tok.Issuer, tok.Expiry, want.Claims)
			}
			return nil
		}
	}
	return fmt.Errorf("accepted a token whose kid and claims the provider never issued: %+v", got)
}

// TestFuzzVerifyPropertyCatchesForgery keeps FuzzVerify's property honest: a token that
// passes Verify (signed by the provider's own key) but was not among the issued ones
// violates it.
func TestFuzzVerifyPropertyCatchesForgery(t *testing.T) {
	p := oidctest.Start(t)
	now := time.Now()
	v, err := extoken.New([]string{p.URL}, "ztbank", p.Client(), extoken.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	good := p.SignES256(t, claims(p, now))
	issued := map[string]issuedToken{good: decodeIssued(t, good)}
	if err := acceptsOnlyIssued(v, issued, good); err != nil {
		t.Fatalf("the issued token fails the property: %v", err)
	}
	forged := p.SignES256(t, with(claims(p, now), "exp", now.Add(2*time.Hour).Unix()))
	if _, err := v.Verify(context.Background(), forged); err != nil {
		t.Fatalf("the forged token must pass Verify for this check to mean anything: %v", err)
	}
	if err := acceptsOnlyIssued(v, issued, forged); err == nil {
		t.Error("a provider-signed token that was never issued satisfies the property")
	}
}
