package stack

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ztbank/ztbank/devkit/devca"
	"github.com/ztbank/ztbank/devkit/devoidc"
)

// EdgeInfo is the client-facing part of stack.json: where to send requests and which CA
// file makes `curl --cacert` trust the edge.
type EdgeInfo struct {
	URL    string `json:"url"`
	CAFile string `json:"ca_file"`
}

// OIDCInfo tells tools (make token, the e2e suite) where the development provider is.
type OIDCInfo struct {
	Issuer        string `json:"issuer"`
	CAFile        string `json:"ca_file"`
	PasswordsFile string `json:"passwords_file"`
	ClientSecrets string `json:"client_secrets_file"`
}

// oidcListen is the provider's fixed local port, so a developer's shell history of
// `make token` keeps working across restarts; free-port runs pick their own.
const oidcListen = "127.0.0.1:9443"

// startFrontDoor creates the dev CA, the edge's HTTPS certificate and the OIDC provider,
// and adds the edge's configuration to its environment. Keys and passwords are generated
// now and exist only under the state directory.
func (s *Stack) startFrontDoor(ctx context.Context) error {
	dir := filepath.Join(s.opts.StateDir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := devca.New()
	if err != nil {
		return err
	}
	caFile := filepath.Join(dir, "dev-ca.pem")
	if err := ca.WriteCA(caFile); err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(dir, "edge.crt"), filepath.Join(dir, "edge.key")
	if err := ca.IssueFiles(certFile, keyFile, devca.LoopbackDNSNames, devca.LoopbackIPs); err != nil {
		return err
	}
	// The console (tools/console) serves HTTPS with its own leaf from the same root, so one
	// trusted dev-ca.pem covers the edge, the OIDC provider and the console; the root's key
	// itself never leaves this process.
	if err := ca.IssueFiles(filepath.Join(dir, "console.crt"), filepath.Join(dir, "console.key"), devca.LoopbackDNSNames, devca.LoopbackIPs); err != nil {
		return err
	}
	listen := oidcListen
	if s.opts.FreePorts {
		listen = "127.0.0.1:0"
	}
	if err := os.MkdirAll(filepath.Join(s.opts.StateDir, "logs"), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(s.opts.StateDir, "logs", "oidc.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p, err := devoidc.Start(ctx, devoidc.Config{Listen: listen, StateDir: filepath.Join(s.opts.StateDir, "oidc"),
		CA: ca, Audience: "ztbank", Logger: slog.New(slog.NewJSONHandler(logf, nil))})
	if err != nil {
		logf.Close()
		return fmt.Errorf("start OIDC provider: %w", err)
	}
	s.oidc, s.oidcLog = p, logf
	s.OIDC = OIDCInfo{Issuer: p.Issuer(), CAFile: caFile, PasswordsFile: p.PasswordsFile(), ClientSecrets: p.ClientSecretsFile()}
	s.edgeFiles = [3]string{caFile, certFile, keyFile}
	return nil
}

// configureEdge gives the edge its certificate, the provider to trust and its public address.
func (s *Stack) configureEdge() {
	edge := s.Services["edge"]
	if edge == nil {
		return
	}
	caFile, certFile, keyFile := s.edgeFiles[0], s.edgeFiles[1], s.edgeFiles[2]
	s.Edge = EdgeInfo{URL: "https://" + edge.Public, CAFile: caFile}
	edge.Env = append(edge.Env,
		"EDGE_TLS_CERT="+certFile, "EDGE_TLS_KEY="+keyFile,
		"ZTBANK_OIDC_ISSUER="+s.OIDC.Issuer, "EDGE_OIDC_CA_FILE="+caFile,
		// The demo users are enrolled through the table the development provider writes next
		// to their passwords; the edge itself knows no users and has no default.
		"EDGE_ENROLMENT="+filepath.Join(s.opts.StateDir, "oidc", devoidc.EnrolmentFile),
		"ZTBANK_PUBLIC_LISTEN="+edge.Public)
}

func (s *Stack) stopFrontDoor() {
	if s.oidc != nil {
		s.oidc.Close()
		s.oidc = nil
	}
	if s.oidcLog != nil {
		s.oidcLog.Close()
		s.oidcLog = nil
	}
}
