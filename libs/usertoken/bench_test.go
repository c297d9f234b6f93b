package usertoken

import (
	"context"
	"net/http/httptest"
	"testing"
)

func jwksBytes(t testing.TB, iss *Issuer) []byte {
	t.Helper()
	w := httptest.NewRecorder()
	iss.JWKSHandler().ServeHTTP(w, httptest.NewRequest("GET", "/.well-known/jwks.json", nil))
	return w.Body.Bytes()
}

func BenchmarkMint(b *testing.B) {
	iss := newIssuer(b, newClock())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Mint(ctx, alice); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyUncached(b *testing.B) { benchmarkVerify(b, WithCacheSize(0)) }

func BenchmarkVerifyCached(b *testing.B) { benchmarkVerify(b) }

// benchmarkVerify times verifying one token with a verifier built with opts.
func benchmarkVerify(b *testing.B, opts ...Option) {
	clk := newClock()
	iss := newIssuer(b, clk)
	v := NewVerifier(iss, "bank-a", edgeID, append([]Option{WithClock(clk.Now)}, opts...)...)
	tok := mint(b, iss, alice)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
