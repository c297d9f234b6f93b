package exchange_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/enrol"
	"github.com/ztbank/ztbank/services/edge/exchange"
	"github.com/ztbank/ztbank/services/edge/extoken"
	"github.com/ztbank/ztbank/services/edge/internal/oidctest"
)

var edgeID = spiffeid.RequireFromString("spiffe://ztbank.local/ns/ztbank-system/sa/edge")

func TestIssuerTrustIsPerTenant(t *testing.T) {
	idpA, idpB := oidctest.Start(t), oidctest.Start(t)
	client := &http.Client{Transport: multiTLS(idpA, idpB)}
	ext, err := extoken.New([]string{idpA.URL, idpB.URL}, "ztbank", client)
	if err != nil {
		t.Fatal(err)
	}
	table, err := enrol.DemoTable([]string{"bank-a", "bank-b"})
	if err != nil {
		t.Fatal(err)
	}
	minter, err := usertoken.NewIssuer(edgeID)
	if err != nil {
		t.Fatal(err)
	}
	ex := exchange.New(ext, table, map[string][]string{"bank-a": {idpA.URL}, "bank-b": {idpB.URL}}, minter,
		exchange.WithLogger(slog.New(slog.DiscardHandler)))
	now := time.Now()
	claims := func(iss, email string) map[string]any {
		return map[string]any{"iss": iss, "aud": "ztbank", "sub": "s", "email": email, "exp": now.Add(time.Hour).Unix()}
	}
	for _, tc := range []struct {
		name   string
		token  string
		tenant string
		want   error
	}{
		{"bank-a user from bank-a's provider", idpA.SignRS256(t, claims(idpA.URL, "alice@bank-a")), "bank-a", nil},
		{"bank-b user from bank-b's provider", idpB.SignES256(t, claims(idpB.URL, "bob@bank-b")), "bank-b", nil},
		{"bank-a user vouched for by bank-b's provider", idpB.SignRS256(t, claims(idpB.URL, "alice@bank-a")), "bank-a", exchange.ErrUntrustedIssuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ex.Exchange(context.Background(), http.Header{"Authorization": {"Bearer " + tc.token}}, tc.tenant)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Exchange() = %v, want %v", err, tc.want)
			}
			if tc.want != nil && !errors.Is(err, problem.ErrForbidden) {
				t.Errorf("Exchange() = %v, want a 403 category", err)
			}
			if d := problem.From(err); tc.want != nil && d.Type != problem.TypeEdge {
				t.Errorf("Exchange() problem type %q, want the edge's refusal mark %s", d.Type, problem.TypeEdge)
			}
		})
	}
}

func TestReuseUntilMargin(t *testing.T) {
	idp := oidctest.Start(t)
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { return now }
	ext, err := extoken.New([]string{idp.URL}, "ztbank", idp.Client(), extoken.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	table, err := enrol.DemoTable([]string{"bank-a", "bank-b"})
	if err != nil {
		t.Fatal(err)
	}
	minter, err := usertoken.NewIssuer(edgeID, usertoken.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	ex := exchange.New(ext, table, map[string][]string{"bank-a": {idp.URL}}, minter,
		exchange.WithClock(clock), exchange.WithReuseMargin(30*time.Second), exchange.WithLogger(slog.New(slog.DiscardHandler)))
	h := http.Header{"Authorization": {"Bearer " + idp.SignRS256(t, map[string]any{
		"iss": idp.URL, "aud": "ztbank", "sub": "s", "email": "alice@bank-a", "exp": now.Add(time.Hour).Unix()})}}
	first, err := ex.Exchange(context.Background(), h, "bank-a")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(usertoken.MaxTTL - 31*time.Second)
	second, err := ex.Exchange(context.Background(), h, "bank-a")
	if err != nil {
		t.Fatal(err)
	}
	if second.Token.ID != first.Token.ID {
		t.Error("re-minted with 31s of life left; want reuse")
	}
	now = now.Add(2 * time.Second)
	third, err := ex.Exchange(context.Background(), h, "bank-a")
	if err != nil {
		t.Fatal(err)
	}
	if third.Token.ID == first.Token.ID {
		t.Error("reused a token with 29s of life left; want a fresh one")
	}
	// The cached grant does not let the user into another tenant.
	if _, err := ex.Exchange(context.Background(), h, "bank-b"); !errors.Is(err, exchange.ErrWrongTenant) {
		t.Errorf("Exchange(bank-b) with a cached bank-a grant = %v, want ErrWrongTenant", err)
	}
}

// multiTLS trusts the test certificates of several providers.
func multiTLS(ps ...*oidctest.Provider) http.RoundTripper {
	t := ps[0].Client().Transport.(*http.Transport).Clone()
	for _, p := range ps[1:] {
		t.TLSClientConfig.RootCAs.AddCert(p.Certificate())
	}
	return t
}
