package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ztbank/ztbank/devkit/atomicfile"
	"github.com/ztbank/ztbank/devkit/devca"
	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/tools/devoidc/config"
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

func serve(ctx context.Context, args []string, env config.Config, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devoidc serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", env.Listen, "loopback `address` to serve HTTPS on (port 0 picks a free one); env DEVOIDC_LISTEN")
	stateDir := fs.String("state-dir", env.StateDir, "`directory` for passwords.json, client-secrets.json and provider.json (keep it out of git); env DEVOIDC_STATE_DIR")
	issuer := fs.String("issuer", env.Issuer, "container mode only: the `URL` clients reach the provider by, e.g. http://devoidc:9998; an http:// issuer serves plain HTTP on any address; env DEVOIDC_ISSUER")
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

	// A plain-HTTP issuer needs no CA: nothing would present its certificate.
	var (
		ca     *devca.CA
		caFile string
	)
	insecure := *issuer != ""
	if !strings.HasPrefix(*issuer, "http://") {
		if ca, caFile, err = loadOrCreateCA(*caCert, *caKey, stateAbs); err != nil {
			return fmt.Errorf("serve: %w", err)
		}
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	p, err := devoidc.Start(ctx, devoidc.Config{
		Listen:         *listen,
		StateDir:       stateAbs,
		CA:             ca,
		Issuer:         *issuer,
		Insecure:       insecure,
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
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

// healthcheck answers a container's health probe: distroless images have no curl, so the
// binary probes its own provider's /ready endpoint, found from the environment (container
// mode) or from provider.json in the state directory.
func healthcheck(ctx context.Context, args []string, env config.Config, stderr io.Writer) error {
	fs := flag.NewFlagSet("devoidc healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", env.StateDir, "state `directory` of the provider to probe; env DEVOIDC_STATE_DIR")
	issuer := fs.String("issuer", env.Issuer, "issuer `URL` to probe instead of the one in provider.json; env DEVOIDC_ISSUER")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e := endpointFlags{issuer: *issuer}
	if e.issuer == "" || !strings.HasPrefix(e.issuer, "http://") {
		data, err := os.ReadFile(filepath.Join(*stateDir, providerInfoFile))
		if err != nil {
			return fmt.Errorf("healthcheck: provider not ready: %w", err)
		}
		var info providerInfo
		if err := json.Unmarshal(data, &info); err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		e.issuer, e.caFile = info.Issuer, info.CAFile
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if e.caFile != "" {
		var err error
		if client, err = e.httpClient(); err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		client.Timeout = 2 * time.Second
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(e.issuer, "/")+"/ready", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s/ready answered HTTP %d", e.issuer, resp.StatusCode)
	}
	return nil
}
