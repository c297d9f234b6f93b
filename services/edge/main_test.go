package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/localports"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/internal/oidctest"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// freeAddr returns a loopback address reserved for this test process. Not a port-0 pick
// closed again: that port is in the kernel's ephemeral range, and the thousands of client
// connections a replica test makes can be given it as their local port before (or while)
// a replica binds it again after a restart ("bind: address already in use", seen in a
// loaded make test run).
func freeAddr(t *testing.T) string {
	t.Helper()
	ports, err := localports.Reserve(1)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
}

// TestRunMeshMode starts the real binary's run() in mesh mode (plain HTTP behind a sidecar,
// so no SPIRE is needed) against a loopback provider and a gateway stand-in, and drives one
// request through ext_authz and the proxy.
func TestRunMeshMode(t *testing.T) {
	p := oidctest.Start(t)
	caFile := filepath.Join(t.TempDir(), "provider-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	var gotPath, gotAuth string
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
		_, _ = io.WriteString(w, "gateway")
	}))
	defer gw.Close()

	// Enrolment as a deployment configures it: a table file, not the local stack's demo users.
	table := filepath.Join(t.TempDir(), "enrolment.json")
	if err := os.WriteFile(table, []byte(`[{"key":"alice@bank-a","tenant":"bank-a","user_id":"6f1c2a0e-8d0b-4d7e-9a39-0d3c1b2f4a55","roles":["customer"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	public, internal, health := freeAddr(t), freeAddr(t), freeAddr(t)
	env := map[string]string{
		"EDGE_ENROLMENT":           table,
		"ZTBANK_TRANSPORT_MODE":    "mesh",
		"ZTBANK_LISTEN":            internal,
		"ZTBANK_HEALTH_LISTEN":     health,
		"ZTBANK_PEER_URL_TEMPLATE": gw.URL + "/{tenant}",
		"EDGE_PUBLIC_LISTEN":       public,
		"EDGE_ISSUERS":             "bank-a=" + p.URL + ",bank-b=" + p.URL,
		"EDGE_OIDC_CA_FILE":        caFile,
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envOf(env), &stdout, &stderr) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run() = %v\n%s", err, stderr.String())
		}
	}()

	waitFor(t, "http://"+health+"/healthz")
	if err := run(context.Background(), []string{"edge", "healthcheck"}, envOf(env), io.Discard, io.Discard); err != nil {
		t.Errorf("edge healthcheck = %v", err)
	}
	now := time.Now()
	ext := p.SignRS256(t, map[string]any{"iss": p.URL, "aud": "ztbank", "sub": "x", "email": "alice@bank-a",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})

	req, _ := http.NewRequest(http.MethodGet, "http://"+public+"/authz/bank-a/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+ext)
	// What the edge's own sidecar adds in mesh mode: it must not be mistaken for a client's.
	req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://ztbank.local/ns/ztbank-system/sa/edge;URI=spiffe://ztbank.local/ns/ztbank-system/sa/emissary-ingress")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	internalTok, _ := strings.CutPrefix(resp.Header.Get("Authorization"), "Bearer ")
	if resp.StatusCode != http.StatusOK || internalTok == "" {
		t.Fatalf("ext_authz: status %d, Authorization %q\n%s", resp.StatusCode, resp.Header.Get("Authorization"), stderr.String())
	}

	// The internal token verifies against the JWKS the edge serves on its internal listener.
	keys := usertoken.NewRemoteKeys(http.DefaultClient, "http://"+internal+"/.well-known/jwks.json")
	edgeID := mustEdgeID(t)
	if _, err := usertoken.NewVerifier(keys, "bank-a", edgeID).Verify(context.Background(), internalTok); err != nil {
		t.Errorf("internal token from run(): %v", err)
	}

	req, _ = http.NewRequest(http.MethodGet, "http://"+public+"/bank-a/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+ext)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "gateway" || gotPath != "/bank-a/v1/accounts" || gotAuth != "Bearer "+internalTok {
		t.Errorf("proxy: status %d body %q; gateway saw path %q auth %q", resp.StatusCode, body, gotPath, gotAuth)
	}

	// Only the ingress may have internal tokens handed over: another workload's sidecar
	// identity, or none, is refused.
	for _, xfcc := range []string{"URI=spiffe://ztbank.local/ns/bank-a/sa/gateway", ""} {
		req, _ = http.NewRequest(http.MethodGet, "http://"+public+"/authz/bank-a/v1/accounts", nil)
		req.Header.Set("Authorization", "Bearer "+ext)
		if xfcc != "" {
			req.Header.Set("X-Forwarded-Client-Cert", xfcc)
		}
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Authorization") != "" {
			t.Errorf("ext_authz with XFCC %q: status %d, Authorization %q; want 403 and no token", xfcc, resp.StatusCode, resp.Header.Get("Authorization"))
		}
	}

	// A client X-Spiffe-Id is refused in mesh mode too.
	req, _ = http.NewRequest(http.MethodGet, "http://"+public+"/authz/bank-a/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+ext)
	req.Header.Set("X-Spiffe-Id", "spiffe://bank-a/user/someone-else")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("client X-Spiffe-Id in mesh mode: status %d, want 403", resp.StatusCode)
	}
}

// TestRunRefusesWithoutEnrolment starts the edge with everything but its enrolment
// configuration: it must refuse to start, with one line naming the variable, rather than
// fall back to any compiled-in table.
func TestRunRefusesWithoutEnrolment(t *testing.T) {
	env := map[string]string{
		"ZTBANK_TRANSPORT_MODE":    "mesh",
		"ZTBANK_PEER_URL_TEMPLATE": "http://{service}.{namespace}:8443",
		"EDGE_ISSUERS":             "bank-a=https://idp.example,bank-b=https://idp.example",
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"edge"}, envOf(env), &stdout, &stderr)
	if err == nil || !strings.HasPrefix(err.Error(), "EDGE_ENROLMENT is not set") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("run() without EDGE_ENROLMENT = %v; want one line starting \"EDGE_ENROLMENT is not set\"", err)
	}
	env["EDGE_ENROLMENT"] = "claims"
	if err := run(context.Background(), []string{"edge", "healthcheck"}, envOf(env), io.Discard, io.Discard); err == nil || strings.Contains(err.Error(), "EDGE_ENROLMENT") {
		t.Errorf("with EDGE_ENROLMENT=claims the loader must pass (the healthcheck then fails on the absent port), got %v", err)
	}
}

func mustEdgeID(t *testing.T) spiffeid.ID {
	t.Helper()
	w, ok := topology.Default().Workload("edge")
	if !ok {
		t.Fatal("no edge in the topology")
	}
	return w.ID
}

func waitFor(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not up within 10s", url)
}
