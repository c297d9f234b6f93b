package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// CertFiles are the console's HTTPS certificate (leaf then the dev CA) and key, which the
// local stack issues from its dev CA beside the edge's (stack.ConsoleCertFiles).
type CertFiles struct{ Cert, Key string }

// FromStack builds a Config from what a running local stack recorded in stack.json: the
// services' log files and health addresses. The topology is the one the stack runs.
func FromStack(info stack.Info, topo *topology.Topology, matrixHTML, token string) Config {
	cfg := Config{Topology: topo, Health: map[string]string{}, MatrixHTML: matrixHTML, Token: token}
	for _, w := range info.Workloads {
		if w.Log != "" {
			cfg.LogFiles = append(cfg.LogFiles, w.Log)
		}
		if w.Health != "" {
			cfg.Health[w.Name] = w.Health
		}
	}
	return cfg
}

// Server is a running console.
type Server struct {
	// URL is the address to open, token included; print it once.
	URL  string
	done chan error
}

// Wait blocks until the console has stopped (its context was cancelled) and returns why it
// stopped if that was not the context.
func (s *Server) Wait() error { return <-s.done }

// Start serves the console over HTTPS on listen (a loopback address) with the certificate in
// files, and follows the audit logs, until ctx is done.
func Start(ctx context.Context, cfg Config, listen string, files CertFiles) (*Server, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("console listen address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		// The console shows every tenant's decisions; it is for the developer's own machine.
		return nil, fmt.Errorf("console listen address %q: only a loopback IP is allowed", listen)
	}
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, fmt.Errorf("console certificate: %w (the local stack issues it from its dev CA when it starts; restart the stack with `make down && make up`)", err)
	}
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second,
		TLSConfig:   &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		BaseContext: func(net.Listener) context.Context { return ctx }}
	s := &Server{URL: fmt.Sprintf("https://%s/?token=%s", ln.Addr().String(), cfg.Token), done: make(chan error, 1)}
	follow, stopFollow := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() { defer close(followed); c.Run(follow) }()
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	go func() {
		var err error
		select {
		case <-ctx.Done():
			shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			// Event streams never end on their own; Shutdown waits for them only briefly.
			if srv.Shutdown(shut) != nil {
				srv.Close()
			}
			cancel()
			<-served
		case err = <-served:
		}
		stopFollow()
		<-followed
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// DefaultCertFiles is where the local stack writes the console's certificate.
func DefaultCertFiles(stateDir string) CertFiles {
	dir := filepath.Join(stateDir, "pki")
	return CertFiles{Cert: filepath.Join(dir, "console.crt"), Key: filepath.Join(dir, "console.key")}
}
