package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/devca"
	"github.com/ztbank/ztbank/devkit/devoidc"
)

// TestWithDevProvider runs the edge against the real development provider on loopback:
// users log in headlessly through its authorization-code + PKCE endpoints, and the edge
// finds its keys by discovery, as it would a hosted provider's.
func TestWithDevProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the development OIDC provider; skipped with -short")
	}
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := devoidc.Start(ctx, devoidc.Config{CA: ca, StateDir: filepath.Join(t.TempDir(), "oidc"), Audience: "ztbank"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool()}}}
	passwords, err := devoidc.ReadSecrets(p.PasswordsFile())
	if err != nil {
		t.Fatal(err)
	}
	login := func(username string) devoidc.Tokens {
		t.Helper()
		tok, err := devoidc.Login(ctx, client, p.Issuer(), devoidc.CLIClientID, username, passwords[username])
		if err != nil {
			t.Fatalf("Login(%s): %v", username, err)
		}
		return tok
	}
	secrets, err := devoidc.ReadSecrets(p.ClientSecretsFile())
	if err != nil {
		t.Fatal(err)
	}
	service, err := devoidc.ClientCredentials(ctx, client, p.Issuer(), devoidc.ServiceClientID, secrets[devoidc.ServiceClientID])
	if err != nil {
		t.Fatal(err)
	}

	te := newTestEdgeFor(t, p.Issuer(), client)
	alice, bob := login("alice@bank-a"), login("bob@bank-b")
	sig := strings.LastIndex(alice.AccessToken, ".") + 1
	// Change the signature's first character: its top bits change, so it cannot verify.
	repl := "A"
	if alice.AccessToken[sig] == 'A' {
		repl = "B"
	}
	flipped := alice.AccessToken[:sig] + repl + alice.AccessToken[sig+1:]

	for _, tc := range []struct {
		name       string
		token      string
		path       string
		wantStatus int
		wantReason string
	}{
		{"alice at bank-a", alice.AccessToken, "/bank-a/v1/accounts", 200, ""},
		{"alice via ext_authz", alice.AccessToken, "/authz/bank-a/v1/accounts", 200, ""},
		{"bob at bank-b", bob.AccessToken, "/bank-b/v1/payments", 200, ""},
		{"bob at bank-a", bob.AccessToken, "/bank-a/v1/accounts", 403, "user belongs to another tenant"},
		{"ID token instead of access token", alice.IDToken, "/bank-a/v1/accounts", 403, "user not enrolled"},
		{"service token, no user", service.AccessToken, "/bank-a/v1/accounts", 403, "user not enrolled"},
		{"tampered signature", flipped, "/bank-a/v1/accounts", 401, "invalid signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te.logs.Reset()
			resp := te.do(t, http.MethodGet, tc.path, bearer(tc.token))
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantStatus == 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := te.logs.refusals(); len(got) != 1 || got[0] != tc.wantReason {
				t.Errorf("logged refusals %q, want [%q]", got, tc.wantReason)
			}
		})
	}
	reqs := te.gateways["bank-a"].requests()
	u, _ := demo.UserByName("alice@bank-a")
	if len(reqs) != 1 || reqs[0].User.ID.String() != "spiffe://bank-a/user/"+u.ID.String() {
		t.Errorf("bank-a gateway saw %d requests, first user %v; want one from alice", len(reqs), reqs)
	}
}
