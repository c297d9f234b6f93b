package extoken_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

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
// provider on loopback. Nothing may panic, every refusal must carry a reason, and only a
// token the provider signed may be accepted.
func FuzzVerify(f *testing.F) {
	p := oidctest.Start(f)
	now := time.Now()
	v, err := extoken.New([]string{p.URL}, "ztbank", p.Client(), extoken.WithClock(func() time.Time { return now }),
		extoken.WithRefetchInterval(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	good := p.SignES256(f, claims(p, now))
	good2 := p.SignRS256(f, claims(p, now))
	for _, s := range []string{good, good2, "", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := v.Verify(context.Background(), raw)
		if err != nil {
			if extoken.Reason(err) == nil {
				t.Fatalf("Verify(%q) = %v: no reason", raw, err)
			}
			return
		}
		if raw != good && raw != good2 && tok.Subject != "u1" {
			t.Fatalf("accepted a token the provider did not sign: %q", raw)
		}
	})
}
