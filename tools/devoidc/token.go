package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/libs/transport"
)

// endpointFlags are the flags shared by token and client-token: where the provider is and
// how to trust it, read from the stack file unless given explicitly.
type endpointFlags struct {
	stack, issuer, caFile, secretsFile string
}

func (e *endpointFlags) register(fs *flag.FlagSet, secretsFlag, secretsUsage string) {
	fs.StringVar(&e.stack, "stack", ".dev/stack.json", "stack `file` whose \"oidc\" object names the issuer, CA and secrets files")
	fs.StringVar(&e.issuer, "issuer", "", "issuer `URL` (overrides the stack file)")
	fs.StringVar(&e.caFile, "cacert", "", "CA certificate `file` to verify the issuer with (overrides the stack file)")
	fs.StringVar(&e.secretsFile, secretsFlag, "", secretsUsage)
}

// resolve fills what was not given on the command line from the stack file. The stack file
// is read only when something is missing, so explicit flags work without a running stack.
func (e *endpointFlags) resolve(secretsFromInfo func(providerInfo) string) error {
	if e.issuer != "" && e.caFile != "" && e.secretsFile != "" {
		return nil
	}
	data, err := os.ReadFile(e.stack)
	if err != nil {
		return fmt.Errorf("read stack file (is the stack running? start it with make dev): %w", err)
	}
	var stack struct {
		OIDC *providerInfo `json:"oidc"`
	}
	if err := json.Unmarshal(data, &stack); err != nil {
		return fmt.Errorf("parse %s: %w", e.stack, err)
	}
	if stack.OIDC == nil {
		return fmt.Errorf("%s has no \"oidc\" object", e.stack)
	}
	if e.issuer == "" {
		e.issuer = stack.OIDC.Issuer
	}
	if e.caFile == "" {
		e.caFile = stack.OIDC.CAFile
	}
	if e.secretsFile == "" {
		e.secretsFile = secretsFromInfo(*stack.OIDC)
	}
	if e.issuer == "" || e.caFile == "" || e.secretsFile == "" {
		return fmt.Errorf("%s: \"oidc\" lacks issuer, ca_file or the secrets file", e.stack)
	}
	return nil
}

// httpClient trusts only the dev CA: a token request that reached anything else would hand
// a password to it.
// secretAndClient is what both token commands need before they ask the provider: name's
// secret from the secrets file resolve chose (what says what kind of name it is, for the
// error), and a client that trusts the provider's CA.
func (e *endpointFlags) secretAndClient(name, what string) (string, *http.Client, error) {
	secrets, err := devoidc.ReadSecrets(e.secretsFile)
	if err != nil {
		return "", nil, err
	}
	secret, ok := secrets[name]
	if !ok {
		return "", nil, fmt.Errorf("no %s %q in %s", what, name, e.secretsFile)
	}
	client, err := e.httpClient()
	if err != nil {
		return "", nil, err
	}
	return secret, client, nil
}

func (e *endpointFlags) httpClient() (*http.Client, error) {
	pool, err := transport.CAPool(e.caFile)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

func userToken(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devoidc token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var e endpointFlags
	e.register(fs, "passwords", "passwords.json `file` (overrides the stack file)")
	user := fs.String("user", "", "`username` to log in, e.g. alice@bank-a")
	clientID := fs.String("client", devoidc.CLIClientID, "public client `id`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("token: -user is required, e.g. -user alice@bank-a")
	}
	if err := e.resolve(func(i providerInfo) string { return i.PasswordsFile }); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	password, client, err := e.secretAndClient(*user, "demo user")
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	tokens, err := devoidc.Login(ctx, client, e.issuer, *clientID, *user, password)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tokens.AccessToken)
	return err
}

func clientToken(ctx context.Context, args []string, _ func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devoidc client-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var e endpointFlags
	e.register(fs, "secrets", "client-secrets.json `file` (overrides the stack file)")
	clientID := fs.String("client", devoidc.ServiceClientID, "confidential client `id`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	err := e.resolve(func(i providerInfo) string {
		if i.ClientSecretsFile != "" {
			return i.ClientSecretsFile
		}
		// The provider writes both files side by side.
		return filepath.Join(filepath.Dir(i.PasswordsFile), devoidc.ClientSecretsFile)
	})
	if err != nil {
		return fmt.Errorf("client-token: %w", err)
	}
	secret, client, err := e.secretAndClient(*clientID, "client")
	if err != nil {
		return fmt.Errorf("client-token: %w", err)
	}
	tokens, err := devoidc.ClientCredentials(ctx, client, e.issuer, *clientID, secret)
	if err != nil {
		return fmt.Errorf("client-token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tokens.AccessToken)
	return err
}
