package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/ztbank/ztbank/libs/devca"
	"github.com/ztbank/ztbank/libs/devoidc"
)

// providerInfo is what a client needs to reach the provider. Its JSON is the "oidc" object
// of .dev/stack.json, so the stack can copy it verbatim.
type providerInfo struct {
	Issuer            string `json:"issuer"`
	CAFile            string `json:"ca_file"`
	PasswordsFile     string `json:"passwords_file"`
	ClientSecretsFile string `json:"client_secrets_file,omitempty"`
	Audience          string `json:"audience,omitempty"`
}

// providerInfoFile is written to the state directory once the provider is serving; its
// appearance is the readiness signal for whoever started the process.
const providerInfoFile = "provider.json"

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devoidc serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9900", "loopback `address` to serve HTTPS on (port 0 picks a free one)")
	stateDir := fs.String("state-dir", ".dev/oidc", "`directory` for passwords.json, client-secrets.json and provider.json (keep it out of git)")
	caCert := fs.String("ca-cert", "", "dev CA certificate `file` to issue the TLS certificate from (with -ca-key); empty: generate a CA and write <state-dir>/ca.pem")
	caKey := fs.String("ca-key", "", "dev CA private key `file` (with -ca-cert)")
	audience := fs.String("audience", devoidc.DefaultAudience, "API `audience` put in every access token")
	alg := fs.String("alg", devoidc.RS256, "token signing `algorithm`: RS256 or ES256")
	accessTTL := fs.Duration("access-token-ttl", devoidc.DefaultAccessTokenTTL, "access token `lifetime`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}
	stateAbs, err := filepath.Abs(*stateDir)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	ca, caFile, err := loadOrCreateCA(*caCert, *caKey, stateAbs)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	p, err := devoidc.Start(ctx, devoidc.Config{
		Listen:         *listen,
		StateDir:       stateAbs,
		CA:             ca,
		Audience:       *audience,
		Algorithm:      *alg,
		AccessTokenTTL: *accessTTL,
		Logger:         logger,
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer p.Close()

	info := providerInfo{
		Issuer:            p.Issuer(),
		CAFile:            caFile,
		PasswordsFile:     p.PasswordsFile(),
		ClientSecretsFile: p.ClientSecretsFile(),
		Audience:          *audience,
	}
	if err := writeJSON(filepath.Join(stateAbs, providerInfoFile), info); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	fmt.Fprintln(stdout, p.Issuer())

	select {
	case <-ctx.Done():
		if err := p.Close(); err != nil {
			return fmt.Errorf("serve: shutdown: %w", err)
		}
		return p.Wait()
	case <-waitCh(p):
		return errors.New("serve: provider stopped unexpectedly")
	}
}

// waitCh turns Provider.Wait into a channel for select.
func waitCh(p *devoidc.Provider) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.Wait() }()
	return ch
}

// loadOrCreateCA uses the stack's CA when given one, so that the edge and the provider are
// verified with one --cacert file; alone, it generates a CA whose key never leaves memory.
func loadOrCreateCA(certPath, keyPath, stateDir string) (*devca.CA, string, error) {
	switch {
	case certPath != "" && keyPath != "":
		ca, err := devca.Load(certPath, keyPath)
		if err != nil {
			return nil, "", err
		}
		abs, err := filepath.Abs(certPath)
		return ca, abs, err
	case certPath != "" || keyPath != "":
		return nil, "", errors.New("-ca-cert and -ca-key go together")
	}
	ca, err := devca.New()
	if err != nil {
		return nil, "", err
	}
	caFile := filepath.Join(stateDir, "ca.pem")
	if err := ca.WriteCA(caFile); err != nil {
		return nil, "", err
	}
	return ca, caFile, nil
}

// writeJSON writes v through a rename, so a reader polling for the file never sees it half
// written.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, time.Now().UnixNano())
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
