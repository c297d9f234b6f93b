package devoidc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devca"
	"github.com/ztbank/ztbank/devkit/localports"
)

// startProvider starts a real provider on loopback, with its own CA and state directory.
func startProvider(t *testing.T, cfg Config) (*Provider, *http.Client) {
	t.Helper()
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg.CA = ca
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(t.TempDir(), "oidc")
	}
	p, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	t.Cleanup(func() { p.Close() })
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool()}},
	}
	return p, client
}

func passwordOf(t *testing.T, p *Provider, username string) string {
	t.Helper()
	pw, err := ReadSecrets(p.PasswordsFile())
	if err != nil {
		t.Fatal(err)
	}
	if pw[username] == "" {
		t.Fatalf("no password for %s in %s", username, p.PasswordsFile())
	}
	return pw[username]
}

// accessClaims are the claims the edge relies on.
type accessClaims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Tenant   string   `json:"tenant"`
	Roles    []string `json:"roles"`
	Email    string   `json:"email"`
	Expiry   int64    `json:"exp"`
	ClientID string   `json:"client_id"`
}

// verify checks a token the way the edge does, with an independent OIDC library: discovery,
// JWKS, signature, issuer, audience, expiry and algorithm allowlist.
func verify(t *testing.T, p *Provider, client *http.Client, token string, algs ...string) (accessClaims, error) {
	t.Helper()
	ctx := gooidc.ClientContext(context.Background(), client)
	provider, err := gooidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("go-oidc discovery: %v", err)
	}
	if len(algs) == 0 {
		algs = []string{gooidc.RS256, gooidc.ES256}
	}
	v := provider.Verifier(&gooidc.Config{ClientID: DefaultAudience, SupportedSigningAlgs: algs})
	tok, err := v.Verify(ctx, token)
	if err != nil {
		return accessClaims{}, err
	}
	var c accessClaims
	if err := tok.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c, nil
}

func TestDiscoveryAndJWKS(t *testing.T) {
	p, client := startProvider(t, Config{})
	var meta struct {
		Issuer          string   `json:"issuer"`
		JWKSURI         string   `json:"jwks_uri"`
		GrantTypes      []string `json:"grant_types_supported"`
		PKCEMethods     []string `json:"code_challenge_methods_supported"`
		IDTokenAlgs     []string `json:"id_token_signing_alg_values_supported"`
		ResponseTypes   []string `json:"response_types_supported"`
		AuthEndpoint    string   `json:"authorization_endpoint"`
		TokenEndpoint   string   `json:"token_endpoint"`
		RevokeEndpoint  string   `json:"revocation_endpoint"`
		ScopesSupported []string `json:"scopes_supported"`
	}
	getJSON(t, client, p.Issuer()+"/.well-known/openid-configuration", &meta)
	if meta.Issuer != p.Issuer() {
		t.Errorf("issuer = %q, want %q", meta.Issuer, p.Issuer())
	}
	if u, _ := url.Parse(meta.Issuer); u.Scheme != "https" || u.Hostname() != "127.0.0.1" {
		t.Errorf("issuer %q is not https on 127.0.0.1", meta.Issuer)
	}
	for _, grant := range []string{"authorization_code", "refresh_token", "client_credentials"} {
		if !slices.Contains(meta.GrantTypes, grant) {
			t.Errorf("grant_types_supported = %v, missing %s", meta.GrantTypes, grant)
		}
	}
	if !slices.Contains(meta.PKCEMethods, "S256") {
		t.Errorf("code_challenge_methods_supported = %v, missing S256", meta.PKCEMethods)
	}
	if diff := cmp.Diff([]string{"RS256"}, meta.IDTokenAlgs); diff != "" {
		t.Errorf("id_token_signing_alg_values_supported mismatch (-want +got):\n%s", diff)
	}

	var jwks struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			Use string `json:"use"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	getJSON(t, client, meta.JWKSURI, &jwks)
	if len(jwks.Keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(jwks.Keys))
	}
	k := jwks.Keys[0]
	if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || k.Kid == "" {
		t.Errorf("JWKS key = %+v, want an RS256 signing key with a kid", k)
	}
	if k.D != "" {
		t.Error("JWKS publishes a private key")
	}
}

func getJSON(t *testing.T, client *http.Client, u string, v any) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

func TestLoginIssuesVerifiableAccessTokens(t *testing.T) {
	p, client := startProvider(t, Config{})
	ctx := context.Background()
	for _, tc := range []struct {
		username string
		tenant   string
		roles    []string
	}{
		{"alice@bank-a", "bank-a", []string{"customer"}},
		{"carol@bank-a", "bank-a", []string{"staff"}},
		{"bob@bank-b", "bank-b", []string{"customer"}},
		{"dave@bank-b", "bank-b", []string{"customer"}},
		{"erin@bank-b", "bank-b", []string{"staff"}},
	} {
		t.Run(tc.username, func(t *testing.T) {
			before := time.Now()
			tokens, err := Login(ctx, client, p.Issuer(), CLIClientID, tc.username, passwordOf(t, p, tc.username))
			if err != nil {
				t.Fatalf("Login() error = %v", err)
			}
			if tokens.RefreshToken == "" || tokens.IDToken == "" {
				t.Errorf("Login() tokens = %+v, want refresh and ID tokens too", tokens)
			}
			got, err := verify(t, p, client, tokens.AccessToken)
			if err != nil {
				t.Fatalf("access token does not verify: %v", err)
			}
			if exp := time.Unix(got.Expiry, 0); exp.Before(before) || exp.After(before.Add(DefaultAccessTokenTTL+time.Minute)) {
				t.Errorf("exp = %v, want about %v after %v", exp, DefaultAccessTokenTTL, before)
			}
			got.Expiry = 0
			want := accessClaims{
				Issuer:   p.Issuer(),
				Subject:  UserID(tc.username),
				Audience: []string{CLIClientID, DefaultAudience},
				Tenant:   tc.tenant,
				Roles:    tc.roles,
				Email:    tc.username, // the edge enrols demo users by this claim
				ClientID: CLIClientID,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("access token claims mismatch (-want +got):\n%s", diff)
			}

			// The ID token is signed by the same key and names the same audience, so it must
			// not carry what the edge maps a user by, or it could stand in for an access token.
			idClaims, err := verify(t, p, client, tokens.IDToken)
			if err != nil {
				t.Fatalf("ID token does not verify: %v", err)
			}
			if idClaims.Tenant != "" || idClaims.Roles != nil {
				t.Errorf("ID token carries tenant %q and roles %v, want none", idClaims.Tenant, idClaims.Roles)
			}
		})
	}
}

func TestUserIDsAreStable(t *testing.T) {
	// Seed data, fixtures and the isolation suite may name users by these IDs: they must
	// never change, whatever machine or run the provider starts on, and must be the IDs the
	// seed step (devkit/demo) writes to the databases.
	want := map[string]string{
		"alice@bank-a": "bf6e9a70-7d48-5448-8742-29e2c62555ea",
		"carol@bank-a": "e10841f0-37e0-5946-b236-e2eae75b19d4",
		"bob@bank-b":   "c468799c-d693-5b3b-b260-3a8361714db2",
		"dave@bank-b":  "31252754-0f74-582f-88fe-b957f4625ff4",
		"erin@bank-b":  demo.UserID("erin@bank-b").String(),
	}
	for name, id := range want {
		if seeded := demo.UserID(name).String(); seeded != id {
			t.Errorf("%s: seed step uses %s, provider pins %s", name, seeded, id)
		}
	}
	// The reference tenants' cast; a tenant make tenant adds brings generic users of its own.
	got := map[string]string{}
	for _, u := range DemoUsers() {
		if strings.HasSuffix(u.Username, "@bank-a") || strings.HasSuffix(u.Username, "@bank-b") {
			got[u.Username] = u.ID()
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("demo user IDs mismatch (-want +got):\n%s", diff)
	}
}

func TestLoginRejectsBadCredentials(t *testing.T) {
	p, client := startProvider(t, Config{})
	ctx := context.Background()
	alicePW := passwordOf(t, p, "alice@bank-a")
	for _, tc := range []struct {
		name, username, password string
	}{
		{"wrong password", "alice@bank-a", "not-the-password"},
		{"empty password", "alice@bank-a", ""},
		{"another user's password", "bob@bank-b", alicePW},
		{"unknown user", "mallory@bank-a", alicePW},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Login(ctx, client, p.Issuer(), CLIClientID, tc.username, tc.password)
			if !errors.Is(err, ErrLoginRejected) {
				t.Errorf("Login() error = %v, want ErrLoginRejected", err)
			}
		})
	}
	t.Run("unknown client", func(t *testing.T) {
		_, err := Login(ctx, client, p.Issuer(), "ztbank-cli-evil", "alice@bank-a", alicePW)
		if err == nil || errors.Is(err, ErrLoginRejected) {
			t.Errorf("Login() error = %v, want the authorize endpoint's refusal", err)
		}
	})
	t.Run("confidential client without secret", func(t *testing.T) {
		_, err := Login(ctx, client, p.Issuer(), ServiceClientID, "alice@bank-a", alicePW)
		if err == nil {
			t.Error("Login() through the client-credentials-only client succeeded")
		}
	})
}

func TestCodeExchangeRequiresTheRightVerifier(t *testing.T) {
	p, client := startProvider(t, Config{})
	ctx := context.Background()
	code, verifier, err := authorize(ctx, client, p.Issuer(), CLIClientID, "bob@bank-b", passwordOf(t, p, "bob@bank-b"))
	if err != nil {
		t.Fatalf("authorize() error = %v", err)
	}

	_, err = exchangeCode(ctx, client, CLIClientID, code, randomSecret())
	var oauthErr *OAuthError
	if !errors.As(err, &oauthErr) || oauthErr.Code != "invalid_grant" {
		t.Fatalf("exchange with a wrong verifier: error = %v, want invalid_grant", err)
	}
	// The failure was the verifier's alone: the right one still redeems the code, once.
	if _, err := exchangeCode(ctx, client, CLIClientID, code, verifier); err != nil {
		t.Fatalf("exchange with the right verifier: %v", err)
	}
	_, err = exchangeCode(ctx, client, CLIClientID, code, verifier)
	if !errors.As(err, &oauthErr) || oauthErr.Code != "invalid_grant" {
		t.Errorf("second exchange of one code: error = %v, want invalid_grant", err)
	}
}

func TestAuthorizeRequiresPKCES256(t *testing.T) {
	p, client := startProvider(t, Config{})
	noFollow := *client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := url.Values{
		"client_id":     {CLIClientID},
		"response_type": {"code"},
		"redirect_uri":  {CLIRedirectURI},
		"scope":         {"openid"},
		"state":         {"s"},
	}
	for _, tc := range []struct {
		name  string
		extra url.Values
	}{
		{"no challenge", nil},
		{"plain method", url.Values{"code_challenge": {"abcdefghijabcdefghijabcdefghijabcdefghij12345"}, "code_challenge_method": {"plain"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range base {
				q[k] = v
			}
			for k, v := range tc.extra {
				q[k] = v
			}
			resp, err := noFollow.Get(p.Issuer() + "/authorize?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, err := resp.Location()
			if err != nil {
				t.Fatalf("authorize answered HTTP %d without a redirect", resp.StatusCode)
			}
			if got := loc.Query().Get("error"); got != "invalid_request" {
				t.Errorf("authorize redirected to %s, want error=invalid_request", loc)
			}
		})
	}
}

func TestRefreshRotates(t *testing.T) {
	p, client := startProvider(t, Config{})
	ctx := context.Background()
	first, err := Login(ctx, client, p.Issuer(), CLIClientID, "dave@bank-b", passwordOf(t, p, "dave@bank-b"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Refresh(ctx, client, p.Issuer(), CLIClientID, first.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Errorf("Refresh() did not rotate the refresh token")
	}
	claims, err := verify(t, p, client, second.AccessToken)
	if err != nil {
		t.Fatalf("refreshed access token does not verify: %v", err)
	}
	if claims.Subject != UserID("dave@bank-b") || claims.Tenant != "bank-b" {
		t.Errorf("refreshed token sub=%q tenant=%q, want dave's", claims.Subject, claims.Tenant)
	}
	_, err = Refresh(ctx, client, p.Issuer(), CLIClientID, first.RefreshToken)
	var oauthErr *OAuthError
	if !errors.As(err, &oauthErr) || oauthErr.Code != "invalid_grant" {
		t.Errorf("reusing a rotated refresh token: error = %v, want invalid_grant", err)
	}
}

func TestClientCredentials(t *testing.T) {
	p, client := startProvider(t, Config{})
	ctx := context.Background()
	secrets, err := ReadSecrets(p.ClientSecretsFile())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := ClientCredentials(ctx, client, p.Issuer(), ServiceClientID, secrets[ServiceClientID])
	if err != nil {
		t.Fatalf("ClientCredentials() error = %v", err)
	}
	got, err := verify(t, p, client, tokens.AccessToken)
	if err != nil {
		t.Fatalf("client token does not verify: %v", err)
	}
	got.Expiry = 0
	want := accessClaims{Issuer: p.Issuer(), Subject: ServiceClientID, Audience: []string{DefaultAudience}, ClientID: ServiceClientID}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("client token claims mismatch (-want +got):\n%s", diff)
	}

	for _, tc := range []struct{ name, id, secret string }{
		{"wrong secret", ServiceClientID, "guess"},
		{"public client", CLIClientID, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClientCredentials(ctx, client, p.Issuer(), tc.id, tc.secret)
			var oauthErr *OAuthError
			if !errors.As(err, &oauthErr) || oauthErr.Code != "invalid_client" {
				t.Errorf("ClientCredentials() error = %v, want invalid_client", err)
			}
		})
	}
}

func TestES256(t *testing.T) {
	p, client := startProvider(t, Config{Algorithm: ES256})
	tokens, err := Login(context.Background(), client, p.Issuer(), CLIClientID, "alice@bank-a", passwordOf(t, p, "alice@bank-a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(t, p, client, tokens.AccessToken, gooidc.ES256); err != nil {
		t.Errorf("ES256 access token does not verify: %v", err)
	}
	// An edge that allows only RS256 must refuse it.
	if _, err := verify(t, p, client, tokens.AccessToken, gooidc.RS256); err == nil {
		t.Error("ES256 token verified with an RS256-only allowlist")
	}
}

func TestSecretFiles(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	p, _ := startProvider(t, Config{StateDir: stateDir})
	for _, path := range []string{p.PasswordsFile(), p.ClientSecretsFile()} {
		if filepath.Dir(path) != stateDir {
			t.Errorf("%s is outside the state directory %s", path, stateDir)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
		}
	}
	// The edge's enrolment table for the same users lies next to their passwords.
	if filepath.Dir(p.EnrolmentFile()) != stateDir {
		t.Errorf("%s is outside the state directory %s", p.EnrolmentFile(), stateDir)
	}
	wantTable, err := EnrolmentTable(DemoUsers())
	if err != nil {
		t.Fatal(err)
	}
	gotTable, err := os.ReadFile(p.EnrolmentFile())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(wantTable), string(gotTable)); diff != "" {
		t.Errorf("enrolment.json mismatch (-want +got):\n%s", diff)
	}
	pw, err := ReadSecrets(p.PasswordsFile())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name, secret := range pw {
		names = append(names, name)
		if len(secret) < 32 {
			t.Errorf("password of %s is %d characters, want at least 32", name, len(secret))
		}
	}
	slices.Sort(names)
	// Every demo user of the topology, no other (TestUserIDsAreStable pins the reference cast).
	var want []string
	for _, u := range DemoUsers() {
		want = append(want, u.Username)
	}
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("no demo users")
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("passwords.json users mismatch (-want +got):\n%s", diff)
	}

	// A secrets file others can read is refused: those secrets are no longer secret.
	if err := os.Chmod(p.PasswordsFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecrets(p.PasswordsFile()); err == nil {
		t.Error("ReadSecrets() accepted a world-readable file")
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"all interfaces", Config{Listen: "0.0.0.0:0", StateDir: dir, CA: ca}},
		{"host name", Config{Listen: "example.com:0", StateDir: dir, CA: ca}},
		{"no state dir", Config{CA: ca}},
		{"no CA", Config{StateDir: dir}},
		{"HMAC", Config{StateDir: dir, CA: ca, Algorithm: "HS256"}},
		{"none", Config{StateDir: dir, CA: ca, Algorithm: "none"}},
		{"issuer without insecure", Config{StateDir: dir, CA: ca, Issuer: "https://idp.example"}},
		{"insecure without issuer", Config{StateDir: dir, Insecure: true}},
		{"insecure issuer with a path", Config{StateDir: dir, Insecure: true, Issuer: "http://devoidc:9998/x"}},
		{"insecure https issuer without CA", Config{StateDir: dir, Insecure: true, Issuer: "https://devoidc:9998"}},
		{"user without tenant", Config{StateDir: dir, CA: ca, Users: []User{{Username: "alice", Roles: []string{RoleCustomer}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start(context.Background(), tc.cfg)
			if err == nil {
				p.Close()
				t.Fatal("Start() succeeded, want an error")
			}
		})
	}
}

// TestInsecureContainerMode covers the docker-compose setup: plain HTTP, an issuer named by
// the service's host name rather than the bound address.
func TestInsecureContainerMode(t *testing.T) {
	// A reserved port, not a port-0 pick closed again: that one is in the ephemeral range,
	// where a parallel package's outgoing connection can take it before the provider binds.
	ports, err := localports.Reserve(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	addr := net.JoinHostPort("127.0.0.1", port)
	issuer := "http://localhost:" + port

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := Start(ctx, Config{Listen: addr, StateDir: t.TempDir(), Insecure: true, Issuer: issuer})
	if err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	defer p.Close()
	if p.Issuer() != issuer {
		t.Errorf("Issuer() = %q, want %q", p.Issuer(), issuer)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	pw, err := ReadSecrets(p.PasswordsFile())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := Login(ctx, client, issuer, CLIClientID, "bob@bank-b", pw["bob@bank-b"])
	if err != nil {
		t.Fatalf("Login() error = %v", err)
	}
	got, err := verify(t, p, client, tokens.AccessToken)
	if err != nil {
		t.Fatalf("access token does not verify: %v", err)
	}
	if got.Issuer != issuer || got.Tenant != "bank-b" {
		t.Errorf("iss=%q tenant=%q, want %q and bank-b", got.Issuer, got.Tenant, issuer)
	}
}

// TestConcurrentRefreshOfOneToken replays one refresh token from many goroutines at once:
// rotation must let exactly one of them through, and the others must see invalid_grant.
func TestConcurrentRefreshOfOneToken(t *testing.T) {
	p, client := startProvider(t, Config{})
	ctx := context.Background()
	tokens, err := Login(ctx, client, p.Issuer(), CLIClientID, "alice@bank-a", passwordOf(t, p, "alice@bank-a"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := Refresh(ctx, client, p.Issuer(), CLIClientID, tokens.RefreshToken)
			errs <- err
		}()
	}
	got := map[string]int{}
	for range n {
		err := <-errs
		var oauthErr *OAuthError
		switch {
		case err == nil:
			got["ok"]++
		case errors.As(err, &oauthErr):
			got[oauthErr.Code]++
		default:
			t.Errorf("Refresh() error = %v", err)
		}
	}
	if diff := cmp.Diff(map[string]int{"ok": 1, "invalid_grant": n - 1}, got); diff != "" {
		t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
	}
}
