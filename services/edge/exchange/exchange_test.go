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
	trusted := enrol.Issuers{"bank-a": {idpA.URL}, "bank-b": {idpB.URL}}
	// One address enrolled at both banks: two people, one at each bank's provider.
	table, err := enrol.NewTable("email", trusted, []enrol.Entry{
		{Key: "alice@bank-a", Tenant: "bank-a", UserID: "alice", Roles: []string{"customer"}},
		{Key: "bob@bank-b", Tenant: "bank-b", UserID: "bob", Roles: []string{"customer"}},
		{Key: "pat@example.com", Tenant: "bank-a", UserID: "pat-a", Roles: []string{"customer"}},
		{Key: "pat@example.com", Tenant: "bank-b", UserID: "pat-b", Roles: []string{"customer"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	minter, err := usertoken.NewIssuer(edgeID)
	if err != nil {
		t.Fatal(err)
	}
	mappers := map[string]enrol.Mapper{"table": table, "claims": enrol.Claims{Issuers: trusted}}
	now := time.Now()
	// claims carries both mappers' keys: the table reads email, the claims mapper tenant and sub.
	claims := func(iss, email, tenant, sub string) map[string]any {
		return map[string]any{"iss": iss, "aud": "ztbank", "sub": sub, "email": email, "tenant": tenant, "exp": now.Add(time.Hour).Unix()}
	}
	for _, tc := range []struct {
		name   string
		token  string
		tenant string
		want   error
		user   string // the SPIFFE ID granted, when want is nil
	}{
		{"bank-a user from bank-a's provider", idpA.SignRS256(t, claims(idpA.URL, "alice@bank-a", "bank-a", "alice")), "bank-a", nil, "spiffe://bank-a/user/alice"},
		{"bank-b user from bank-b's provider", idpB.SignES256(t, claims(idpB.URL, "bob@bank-b", "bank-b", "bob")), "bank-b", nil, "spiffe://bank-b/user/bob"},
		{"bank-b's pat from bank-b's provider", idpB.SignES256(t, claims(idpB.URL, "pat@example.com", "bank-b", "pat-b")), "bank-b", nil, "spiffe://bank-b/user/pat-b"},
		{"bank-a's pat from bank-a's provider", idpA.SignES256(t, claims(idpA.URL, "pat@example.com", "bank-a", "pat-a")), "bank-a", nil, "spiffe://bank-a/user/pat-a"},
		{"bank-b's provider vouching for a bank-a user", idpB.SignRS256(t, claims(idpB.URL, "alice@bank-a", "bank-a", "alice")), "bank-a", enrol.ErrNotEnrolled, ""},
		{"bank-b's pat on bank-a's routes", idpB.SignRS256(t, claims(idpB.URL, "pat@example.com", "bank-b", "pat-b")), "bank-a", exchange.ErrWrongTenant, ""},
	} {
		for name, mapper := range mappers {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				ex := exchange.New(ext, mapper, trusted, minter, exchange.WithLogger(slog.New(slog.DiscardHandler)))
				g, err := ex.Exchange(context.Background(), http.Header{"Authorization": {"Bearer " + tc.token}}, tc.tenant)
				if !errors.Is(err, tc.want) {
					t.Fatalf("Exchange() = %v, want %v", err, tc.want)
				}
				if tc.want == nil {
					if g.User.ID.String() != tc.user {
						t.Errorf("granted %s, want %s", g.User.ID, tc.user)
					}
					return
				}
				if !errors.Is(err, problem.ErrForbidden) {
					t.Errorf("Exchange() = %v, want a 403 category", err)
				}
				if d := problem.From(err); d.Type != problem.TypeEdge {
					t.Errorf("Exchange() problem type %q, want the edge's refusal mark %s", d.Type, problem.TypeEdge)
				}
			})
		}
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
	table, err := enrol.NewTable("email", enrol.Issuers{"bank-a": {idp.URL}, "bank-b": {idp.URL}},
		[]enrol.Entry{{Key: "alice@bank-a", Tenant: "bank-a", UserID: "alice", Roles: []string{"customer"}}})
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
