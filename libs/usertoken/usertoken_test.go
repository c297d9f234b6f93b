package usertoken

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/ztbank/ztbank/devkit/fakeclock"
	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
)

var (
	edgeID  = spiffeid.RequireFromString("spiffe://ztbank.local/ns/ztbank-system/sa/edge")
	aliceID = spiffeid.RequireFromString("spiffe://bank-a/user/8d5c1ac0-0000-5000-8000-000000000001")
	bobID   = spiffeid.RequireFromString("spiffe://bank-b/user/8d5c1ac0-0000-5000-8000-000000000002")
	alice   = Claims{User: aliceID, Tenant: "bank-a", Roles: []string{"customer"}}
	bob     = Claims{User: bobID, Tenant: "bank-b", Roles: []string{"customer"}}
	start   = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// compareIDs lets cmp compare SPIFFE IDs, whose fields are unexported.
var compareIDs = cmp.Comparer(func(a, b spiffeid.ID) bool { return a == b })

// newClock is a settable clock at the tests' start time, shared by issuer and verifiers.
func newClock() *fakeclock.Clock { return fakeclock.New(start) }

func newIssuer(t testing.TB, clk *fakeclock.Clock, opts ...Option) *Issuer {
	t.Helper()
	iss, err := NewIssuer(edgeID, append([]Option{WithClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

func mint(t testing.TB, iss *Issuer, c Claims) string {
	t.Helper()
	tok, err := iss.Mint(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signRaw signs arbitrary claims with the issuer's current key, for tokens the Issuer itself
// would refuse to mint.
func signRaw(t testing.TB, iss *Issuer, claims any, typ string) string {
	t.Helper()
	priv := signerKey(t, iss)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: iss.JWKS().Keys[0].KeyID}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// signerKeys remembers the private key behind each test issuer's current kid; the Issuer
// itself never exposes it.
var signerKeys sync.Map

func signerKey(t testing.TB, iss *Issuer) *ecdsa.PrivateKey {
	t.Helper()
	iss.mu.Lock()
	defer iss.mu.Unlock()
	if v, ok := signerKeys.Load(iss.cur.kid); ok {
		return v.(*ecdsa.PrivateKey)
	}
	// Replace the current key with one the test knows, keeping the issuer's behaviour.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss.cur.public.Key = &priv.PublicKey
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: iss.cur.kid}},
		(&jose.SignerOptions{}).WithType(TokenType))
	if err != nil {
		t.Fatal(err)
	}
	iss.cur.signer = s
	if err := iss.publishLocked(); err != nil {
		t.Fatal(err)
	}
	signerKeys.Store(iss.cur.kid, priv)
	return priv
}

func validWire(now time.Time) wireClaims {
	return wireClaims{
		Claims: jwt.Claims{
			Issuer: edgeID.String(), Subject: aliceID.String(), Audience: jwt.Audience{"bank-a"},
			Expiry: jwt.NewNumericDate(now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now), ID: "jti-1",
		},
		Tenant: "bank-a", Roles: []string{"customer"},
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerifyRefusals(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, clk)
	other := newIssuer(t, clk) // same iss ID, different keys
	v := NewVerifier(iss, "bank-a", edgeID, WithClock(clk.Now), WithLeeway(0))
	signerKey(t, iss) // before minting, so every token below uses the same key

	good := mint(t, iss, alice)
	parts := strings.Split(good, ".")
	pubJSON, err := json.Marshal(iss.JWKS().Keys[0])
	if err != nil {
		t.Fatal(err)
	}
	hmacWithPublicKey := func() string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubJSON},
			(&jose.SignerOptions{}).WithType(TokenType).WithHeader("kid", iss.JWKS().Keys[0].KeyID))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(s).Claims(validWire(clk.Now())).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}()
	withClaims := func(f func(*wireClaims)) string {
		wc := validWire(clk.Now())
		f(&wc)
		return signRaw(t, iss, wc, TokenType)
	}

	for _, tc := range []struct {
		name string
		raw  string
		want error
	}{
		{"no token", "", ErrMissing},
		{"garbage", "not-a-jwt", ErrMalformed},
		{"oversized", strings.Repeat("a", MaxTokenBytes+1), ErrMalformed},
		{"alg none", b64(`{"alg":"none","typ":"ztbank-user+jwt"}`) + "." + parts[1] + ".", ErrAlgorithm},
		{"hs256 with public key", hmacWithPublicKey, ErrAlgorithm},
		{"wrong signature", parts[0] + "." + parts[1] + "." + strings.Split(mint(t, iss, alice), ".")[2][:10] + parts[2][10:], ErrSignature},
		{"payload swapped", parts[0] + "." + strings.Split(mint(t, iss, bob), ".")[1] + "." + parts[2], ErrSignature},
		{"unknown kid", mint(t, other, alice), ErrUnknownKey},
		{"wrong typ", signRaw(t, iss, validWire(clk.Now()), "JWT"), ErrMalformed},
		{"other tenant's token", mint(t, iss, bob), ErrAudience},
		{"wrong issuer", withClaims(func(c *wireClaims) { c.Issuer = "spiffe://ztbank.local/ns/bank-a/sa/gateway" }), ErrIssuer},
		{"two audiences", withClaims(func(c *wireClaims) { c.Audience = jwt.Audience{"bank-a", "bank-b"} }), ErrAudience},
		{"tenant claim differs", withClaims(func(c *wireClaims) { c.Tenant = "bank-b" }), ErrAudience},
		{"expired", withClaims(func(c *wireClaims) { c.Expiry = jwt.NewNumericDate(clk.Now().Add(-time.Second)) }), ErrExpired},
		{"not yet valid", withClaims(func(c *wireClaims) { c.NotBefore = jwt.NewNumericDate(clk.Now().Add(time.Minute)) }), ErrNotYetValid},
		{"issued in the future", withClaims(func(c *wireClaims) { c.IssuedAt = jwt.NewNumericDate(clk.Now().Add(time.Minute)) }), ErrNotYetValid},
		{"lifetime too long", withClaims(func(c *wireClaims) { c.Expiry = jwt.NewNumericDate(clk.Now().Add(time.Hour)) }), ErrClaims},
		{"no jti", withClaims(func(c *wireClaims) { c.ID = "" }), ErrClaims},
		{"no exp", withClaims(func(c *wireClaims) { c.Expiry = nil }), ErrClaims},
		{"user of other trust domain", withClaims(func(c *wireClaims) { c.Subject = bobID.String() }), ErrClaims},
		{"workload as user", withClaims(func(c *wireClaims) { c.Subject = "spiffe://bank-a/ns/bank-a/sa/gateway" }), ErrClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify() error = %v, want %v", err, tc.want)
			}
		})
	}

	got, err := v.Verify(context.Background(), good)
	if err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	want := caller.User{ID: aliceID, Tenant: "bank-a", Roles: []string{"customer"}, TokenID: got.TokenID, Token: good}
	if diff := cmp.Diff(want, got, compareIDs); diff != "" || got.TokenID == "" {
		t.Errorf("Verify(good) mismatch (-want +got):\n%s", diff)
	}
}

func TestExpiryBoundsAndReplay(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, clk)
	v := NewVerifier(iss, "bank-a", edgeID, WithClock(clk.Now), WithLeeway(2*time.Second))

	// Never beyond the external token.
	c := alice
	c.NotAfter = clk.Now().Add(90 * time.Second)
	tok, err := iss.Issue(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Expiry.Equal(c.NotAfter) {
		t.Errorf("Expiry = %v, want the external token's %v", tok.Expiry, c.NotAfter)
	}
	full, err := iss.Issue(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}
	if got := full.Expiry.Sub(clk.Now()); got != MaxTTL {
		t.Errorf("TTL = %v, want %v", got, MaxTTL)
	}
	c.NotAfter = clk.Now().Add(-time.Second)
	if _, err := iss.Issue(context.Background(), c); !errors.Is(err, ErrExpired) {
		t.Errorf("Issue(expired external token) = %v, want ErrExpired", err)
	}

	// Verified once, cached, then replayed past expiry: the cache must not extend it.
	if _, err := v.Verify(context.Background(), tok.Raw); err != nil {
		t.Fatal(err)
	}
	clk.Add(89 * time.Second)
	if _, err := v.Verify(context.Background(), tok.Raw); err != nil {
		t.Fatalf("Verify before expiry = %v", err)
	}
	clk.Add(4 * time.Second) // past exp + leeway
	if _, err := v.Verify(context.Background(), tok.Raw); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify replayed after expiry = %v, want ErrExpired", err)
	}
	if _, err := v.Verify(context.Background(), tok.Raw); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify replayed again = %v, want ErrExpired", err)
	}
}

func TestNewIssuerRejectsUnsafeSchedules(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"ttl over max", []Option{WithTTL(10 * time.Minute)}},
		{"overlap shorter than ttl", []Option{WithRotation(time.Hour, time.Minute)}},
		{"period shorter than ttl", []Option{WithRotation(time.Minute, time.Hour)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewIssuer(edgeID, tc.opts...); err == nil {
				t.Error("NewIssuer() succeeded, want error")
			}
		})
	}
	if _, err := NewIssuer(spiffeid.ID{}); err == nil {
		t.Error("NewIssuer(zero ID) succeeded, want error")
	}
}

// jwksServer serves iss's JWKS over TLS and counts fetches.
func jwksServer(t *testing.T, iss *Issuer) (*httptest.Server, *int64) {
	t.Helper()
	var mu sync.Mutex
	var n int64
	h := iss.JWKSHandler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestRotationUnderSteadyLoad(t *testing.T) {
	clk := newClock()
	const period, overlap = 10 * time.Minute, 6 * time.Minute
	iss := newIssuer(t, clk, WithRotation(period, overlap))
	srv, fetches := jwksServer(t, iss)
	keys := NewRemoteKeys(srv.Client(), srv.URL, WithClock(clk.Now), WithRefetch(5*time.Second, time.Hour))
	v := NewVerifier(keys, "bank-a", edgeID, WithClock(clk.Now))

	// A steady loop: every simulated second a fresh token is verified, and so is one minted
	// four minutes earlier, across three rotations. None may fail.
	var window []string
	kids := map[string]bool{}
	for s := 0; s < 35*60; s++ {
		tok := mint(t, iss, alice)
		window = append(window, tok)
		if len(window) > 240 {
			window = window[1:]
		}
		for _, raw := range []string{tok, window[0]} {
			if _, err := v.Verify(context.Background(), raw); err != nil {
				t.Fatalf("second %d: Verify() = %v", s, err)
			}
		}
		kids[iss.JWKS().Keys[0].KeyID] = true
		clk.Add(time.Second)
	}
	if len(kids) != 4 {
		t.Errorf("saw %d signing keys over 35 minutes with a 10-minute period, want 4", len(kids))
	}
	// One fetch at start plus one per rotation: the cache did its job.
	if *fetches > 4 {
		t.Errorf("%d JWKS fetches, want at most 4", *fetches)
	}

	// During the overlap the previous key verifies; after it, it is gone from the JWKS.
	// A verifier whose own clock still considers the token live (a fresh RemoteKeys) must
	// refuse it for the missing key, not for its expiry.
	clk2 := newClock()
	iss2 := newIssuer(t, clk2, WithRotation(period, overlap))
	srv2, _ := jwksServer(t, iss2)
	old := mint(t, iss2, alice)
	verifierAt := func(at time.Time) *Verifier {
		return NewVerifier(NewRemoteKeys(srv2.Client(), srv2.URL, WithClock(clk2.Now)), "bank-a", edgeID,
			WithClock(func() time.Time { return at }))
	}
	clk2.Add(period + overlap - time.Second) // rotated, still in overlap
	if _, err := verifierAt(start).Verify(context.Background(), old); err != nil {
		t.Errorf("Verify(previous key, in overlap) = %v", err)
	}
	clk2.Add(time.Second) // overlap over
	if _, err := verifierAt(start).Verify(context.Background(), old); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify(previous key, after overlap) = %v, want ErrUnknownKey", err)
	}
}

func TestRemoteKeysRateLimitsUnknownKid(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, clk)
	srv, fetches := jwksServer(t, iss)
	keys := NewRemoteKeys(srv.Client(), srv.URL, WithClock(clk.Now), WithRefetch(10*time.Second, time.Hour))
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := keys.Key(ctx, "invented-"+string(rune('a'+i%26))); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Key(invented) = %v, want ErrUnknownKey", err)
		}
	}
	if *fetches != 1 {
		t.Errorf("fetches after 50 unknown kids = %d, want 1", *fetches)
	}
	clk.Add(11 * time.Second)
	if _, err := keys.Key(ctx, "invented"); !errors.Is(err, ErrUnknownKey) {
		t.Fatal(err)
	}
	if *fetches != 2 {
		t.Errorf("fetches after the interval = %d, want 2", *fetches)
	}
	if _, err := keys.Key(ctx, iss.JWKS().Keys[0].KeyID); err != nil {
		t.Errorf("Key(current) = %v", err)
	}
}

// A refresh that found the kid it was asked for does not hold back a key published just after
// it: before, a service that had refreshed its set a second before an in-memory edge restarted
// refused the new edge's tokens for the rest of the refetch interval (tests/chaos, ADR 0995).
// Invented kids, and a set that flaps between two replicas' keys, stay limited to one fetch
// per interval (TestTwoReplicasWithoutSharedKeysFail in services/edge shows the flapping).
func TestRemoteKeysFetchesAKeyPublishedAfterARefresh(t *testing.T) {
	issClock, keysClock := newClock(), newClock()
	const period, overlap = 10 * time.Minute, 6 * time.Minute
	iss := newIssuer(t, issClock, WithRotation(period, overlap))
	srv, fetches := jwksServer(t, iss)
	keys := NewRemoteKeys(srv.Client(), srv.URL, WithClock(keysClock.Now), WithRefetch(10*time.Second, time.Hour))
	ctx := context.Background()

	first := iss.JWKS().Keys[0].KeyID
	if _, err := keys.Key(ctx, first); err != nil {
		t.Fatalf("Key(first) = %v", err)
	}
	issClock.Add(period) // the issuer now signs with a new key; the verifier's clock has not moved
	next := iss.JWKS().Keys[0].KeyID
	if next == first {
		t.Fatal("the issuer did not rotate")
	}
	keysClock.Add(time.Second)
	if _, err := keys.Key(ctx, next); err != nil {
		t.Errorf("Key(key published a second after the last fetch) = %v", err)
	}
	for i := 0; i < 20; i++ {
		if _, err := keys.Key(ctx, "invented-"+string(rune('a'+i))); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Key(invented) = %v, want ErrUnknownKey", err)
		}
	}
	// The start-up fetch and the one for the new key; the invented kids come within the
	// interval of a fetch made for an unknown kid, so they cost none.
	if *fetches != 2 {
		t.Errorf("fetches = %d, want 2", *fetches)
	}
	keysClock.Add(11 * time.Second)
	if _, err := keys.Key(ctx, "invented-z"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Key(invented) = %v, want ErrUnknownKey", err)
	}
	if *fetches != 3 {
		t.Errorf("fetches after the interval = %d, want 3", *fetches)
	}
}

func TestParseKeySetDropsSymmetricAndPrivateKeys(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: []byte("shared-secret-shared-secret-1234"), KeyID: "hmac", Algorithm: "HS256"},
		{Key: priv, KeyID: "private", Algorithm: "ES256"},
		{Key: &priv.PublicKey, KeyID: "public", Algorithm: "ES256", Use: "sig"},
		{Key: &priv.PublicKey, KeyID: "enc", Algorithm: "ES256", Use: "enc"},
		{Key: &priv.PublicKey, Algorithm: "ES256"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseKeySet(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for kid := range keys {
		got = append(got, kid)
	}
	if diff := cmp.Diff([]string{"public"}, got); diff != "" {
		t.Errorf("ParseKeySet() kids mismatch (-want +got):\n%s", diff)
	}
}

func TestMiddleware(t *testing.T) {
	clk := newClock()
	iss := newIssuer(t, clk)
	var logs bytes.Buffer
	v := NewVerifier(iss, "bank-a", edgeID, WithClock(clk.Now),
		WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	h := Middleware(v)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(caller.From(r.Context()).User.ID.String()))
	}))

	for _, tc := range []struct {
		name       string
		auth       string
		wantStatus int
		wantBody   string
		wantReason string
	}{
		{"valid", "Bearer " + mint(t, iss, alice), http.StatusOK, aliceID.String(), ""},
		{"lower-case scheme", "bearer " + mint(t, iss, alice), http.StatusOK, aliceID.String(), ""},
		{"missing", "", http.StatusUnauthorized, "", ErrMissing.Error()},
		{"basic", "Basic YWxpY2U6cHc=", http.StatusUnauthorized, "", ErrMissing.Error()},
		{"bank-b token at bank-a", "Bearer " + mint(t, iss, bob), http.StatusUnauthorized, "", ErrAudience.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			r := httptest.NewRequest(http.MethodGet, "/v1/accounts", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusOK {
				if w.Body.String() != tc.wantBody {
					t.Errorf("user = %q, want %q", w.Body.String(), tc.wantBody)
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var body struct {
				Type   string `json:"type"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			// The type is this layer's refusal mark: it is how a client tells a service's
			// token check from the edge's 401.
			if diff := cmp.Diff(struct {
				Type   string `json:"type"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}{problem.TypeInternalToken, tc.wantStatus, tc.wantReason}, body); diff != "" {
				t.Errorf("problem mismatch (-want +got):\n%s", diff)
			}
			var entry struct {
				Msg    string `json:"msg"`
				Reason string `json:"reason"`
			}
			if err := json.Unmarshal(logs.Bytes(), &entry); err != nil {
				t.Fatalf("log line %q: %v", logs.String(), err)
			}
			if entry.Msg != "user token refused" || entry.Reason != tc.wantReason {
				t.Errorf("logged %+v, want reason %q", entry, tc.wantReason)
			}
		})
	}
}
