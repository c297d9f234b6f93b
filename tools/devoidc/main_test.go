package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/devca"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/devkit/localports"
	"github.com/ztbank/ztbank/devkit/syncbuf"
)

// startServe runs `devoidc serve` with the given extra flags and waits for provider.json.
func startServe(t *testing.T, stateDir string, extra ...string) providerInfo {
	t.Helper()
	args := append([]string{"devoidc", "serve", "-listen", "127.0.0.1:0", "-state-dir", stateDir}, extra...)
	return startRun(t, stateDir, args, os.Getenv)
}

// startRun runs the binary's run with args and getenv and waits for the provider.json that
// a serving provider writes to stateDir.
func startRun(t *testing.T, stateDir string, args []string, getenv func(string) string) providerInfo {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stdout, stderr syncbuf.Buffer
	go func() { done <- run(ctx, args, getenv, &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of cancel")
		}
	})

	// serve renames provider.json into place and only then prints the issuer line, so the
	// test waits for both: the file alone may appear a moment before the line.
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(stateDir, providerInfoFile))
		if err == nil && strings.HasSuffix(stdout.String(), "\n") {
			var info providerInfo
			if err := json.Unmarshal(data, &info); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(stdout.String()); got != info.Issuer {
				t.Errorf("serve printed %q, want the issuer %q", got, info.Issuer)
			}
			return info
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v; stderr: %s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s and issuer line after 20s (stdout %q); stderr: %s", providerInfoFile, stdout.String(), stderr.String())
		}
	}
}

func writeStack(t *testing.T, info providerInfo) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stack.json")
	// Only the keys the stack orchestrator promises to write.
	stack := map[string]any{"oidc": map[string]string{
		"issuer":         info.Issuer,
		"ca_file":        info.CAFile,
		"passwords_file": info.PasswordsFile,
	}}
	data, err := json.Marshal(stack)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// claims decodes a JWT payload; signature checks are devoidc's tests' business.
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a compact JWT", jwt)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServeAndToken(t *testing.T) {
	info := startServe(t, filepath.Join(t.TempDir(), "oidc"))
	stack := writeStack(t, info)
	ctx := context.Background()

	for _, tc := range []struct {
		user, tenant string
	}{
		{"alice@bank-a", "bank-a"},
		{"erin@bank-b", "bank-b"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(ctx, []string{"devoidc", "token", "-stack", stack, "-user", tc.user}, os.Getenv, &stdout, &stderr)
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			out := stdout.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("token printed %q, want one line", out)
			}
			c := claims(t, strings.TrimSpace(out))
			got := map[string]any{"iss": c["iss"], "sub": c["sub"], "tenant": c["tenant"]}
			want := map[string]any{"iss": info.Issuer, "sub": devoidc.UserID(tc.user), "tenant": tc.tenant}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("token claims mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("explicit flags", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := []string{"devoidc", "token", "-stack", "/nonexistent", "-issuer", info.Issuer,
			"-cacert", info.CAFile, "-passwords", info.PasswordsFile, "-user", "bob@bank-b"}
		if err := run(ctx, args, os.Getenv, &stdout, &stderr); err != nil {
			t.Fatalf("token: %v", err)
		}
		if sub := claims(t, strings.TrimSpace(stdout.String()))["sub"]; sub != devoidc.UserID("bob@bank-b") {
			t.Errorf("sub = %v, want bob's ID", sub)
		}
	})

	t.Run("client-token", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if err := run(ctx, []string{"devoidc", "client-token", "-stack", stack}, os.Getenv, &stdout, &stderr); err != nil {
			t.Fatalf("client-token: %v", err)
		}
		c := claims(t, strings.TrimSpace(stdout.String()))
		if c["sub"] != devoidc.ServiceClientID || c["tenant"] != nil {
			t.Errorf("client token sub=%v tenant=%v, want the service client and no tenant", c["sub"], c["tenant"])
		}
	})
}

func TestTokenErrors(t *testing.T) {
	info := startServe(t, filepath.Join(t.TempDir(), "oidc"))
	stack := writeStack(t, info)
	otherCA, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := otherCA.WriteCA(otherCAFile); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // a fragment of the one-line error
	}{
		{"no user", []string{"token", "-stack", stack}, "-user is required"},
		{"unknown user", []string{"token", "-stack", stack, "-user", "mallory@bank-a"}, "no demo user"},
		{"no stack", []string{"token", "-stack", filepath.Join(t.TempDir(), "missing.json"), "-user", "alice@bank-a"}, "make dev"},
		{"untrusted CA", []string{"token", "-stack", stack, "-cacert", otherCAFile, "-user", "alice@bank-a"}, "certificate"},
		{"unknown command", []string{"tokens"}, "unknown command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"devoidc"}, tc.args...), os.Getenv, &stdout, &stderr)
			if err == nil {
				t.Fatalf("run succeeded, printed %q", stdout.String())
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error = %q, want one line containing %q", msg, tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing on failure", stdout.String())
			}
		})
	}
}

func TestServeWithStackCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if err := ca.WriteCA(certPath); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteKey(keyPath); err != nil {
		t.Fatal(err)
	}
	info := startServe(t, filepath.Join(dir, "oidc"), "-ca-cert", certPath, "-ca-key", keyPath, "-alg", "ES256")
	if info.CAFile != certPath {
		t.Errorf("ca_file = %q, want the stack's CA %q", info.CAFile, certPath)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"devoidc", "token", "-stack", writeStack(t, info), "-user", "carol@bank-a"}, os.Getenv, &stdout, &stderr); err != nil {
		t.Fatalf("token: %v", err)
	}
	if c := claims(t, strings.TrimSpace(stdout.String())); c["roles"] == nil {
		t.Errorf("token has no roles: %v", c)
	}
}

func TestHealthcheck(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "oidc")
	noEnv := func(string) string { return "" }
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"devoidc", "healthcheck", "-state-dir", stateDir}, noEnv, io.Discard, &stderr); err == nil {
		t.Error("healthcheck passed before the provider started")
	}
	startServe(t, stateDir)
	if err := run(context.Background(), []string{"devoidc", "healthcheck", "-state-dir", stateDir}, noEnv, io.Discard, &stderr); err != nil {
		t.Errorf("healthcheck of a serving provider: %v", err)
	}
}

// TestContainerMode runs the binary as docker-compose does: no arguments, configuration from
// the environment, a plain-HTTP issuer named by host name, and its own health probe.
func TestContainerMode(t *testing.T) {
	// A reserved port, not a port-0 pick closed again: that one is in the ephemeral range,
	// where a parallel package's outgoing connection can take it before the provider binds.
	ports, err := localports.Reserve(1)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[0])
	addr := net.JoinHostPort("127.0.0.1", port)
	stateDir := filepath.Join(t.TempDir(), "oidc")
	env := map[string]string{
		"DEVOIDC_LISTEN":    addr,
		"DEVOIDC_ISSUER":    "http://localhost:" + port,
		"DEVOIDC_STATE_DIR": stateDir,
	}
	getenv := func(k string) string { return env[k] }
	info := startRun(t, stateDir, []string{"/app/devoidc"}, getenv)
	if diff := cmp.Diff(providerInfo{
		Issuer:            env["DEVOIDC_ISSUER"],
		PasswordsFile:     filepath.Join(stateDir, devoidc.PasswordsFile),
		ClientSecretsFile: filepath.Join(stateDir, devoidc.ClientSecretsFile),
		Audience:          devoidc.DefaultAudience,
	}, info); diff != "" {
		t.Errorf("provider.json mismatch (-want +got):\n%s", diff)
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"/app/devoidc", "healthcheck"}, getenv, io.Discard, &stderr); err != nil {
		t.Errorf("healthcheck: %v", err)
	}
}
