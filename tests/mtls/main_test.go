// Package mtls proves the foundation's transport guarantees against a real SPIRE server
// and agent and the real service binaries, started exactly as `make dev` starts them.
package mtls

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/devkit/spiffetest"
	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// svidTTL is short so the rotation test sees several rotations (the agent renews at half
// life) and the outage test sees SVIDs approach expiry.
const svidTTL = 60 * time.Second

var st *teststack.Stack

func TestMain(m *testing.M) {
	teststack.Main(m, "ztmtls", stack.Options{Postgres: true, SVIDTTL: svidTTL}, func(s *teststack.Stack) int {
		st = s
		return m.Run()
	})
}

// mintedClient holds a genuine SVID minted by the stack's SPIRE server for id.
type mintedClient struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func mint(t *testing.T, id spiffeid.ID) mintedClient {
	t.Helper()
	svid, err := st.MintSVID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return mintedClient{svid.SVID, svid.Bundle}
}

// httpClient returns a client that presents this SVID and accepts only server. Keep-alive
// is off so every request is a fresh handshake: these tests are about handshakes.
func (c mintedClient) httpClient(server spiffeid.ID) *http.Client {
	cfg := tlsconfig.MTLSClientConfig(c.svid, c.bundle, tlsconfig.AuthorizeID(server))
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}

// hop mirrors server.Hop.
type hop struct {
	Workload string `json:"workload"`
	Caller   string `json:"caller"`
	Next     []hop  `json:"next"`
	Error    string `json:"error"`
}

func getJSON(c *http.Client, u string) (hop, int, error) {
	var h hop
	resp, err := c.Get(u)
	if err != nil {
		return h, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return h, resp.StatusCode, err
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &h); err != nil {
			return h, resp.StatusCode, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return h, resp.StatusCode, nil
}

// chainErrors lists every hop of a chain response that failed.
func chainErrors(h hop) []string {
	var out []string
	if h.Error != "" {
		out = append(out, h.Workload+": "+h.Error)
	}
	for _, n := range h.Next {
		out = append(out, chainErrors(n)...)
	}
	return out
}

// metric reads one sample from a service's /metrics; missing means 0.
func metric(t *testing.T, svc *stack.Service, name string, labels string) float64 {
	t.Helper()
	return teststack.Sample(t, svc, regexp.QuoteMeta(name+labels))
}

// foreignClient presents a certificate with a legitimate-looking SPIFFE ID signed by a CA
// the trust domain has never heard of.
func foreignClient(t *testing.T, claim spiffeid.ID, server spiffeid.ID) *http.Client {
	t.Helper()
	rogue := spiffetest.NewCA(t, claim.TrustDomain())
	leaf := rogue.SVID(t, claim)
	// The client still verifies the real server against the real bundle.
	real := mint(t, spiffeid.RequireFromPath(claim.TrustDomain(), "/test/verifier"))
	cfg := tlsconfig.TLSClientConfig(real.bundle, tlsconfig.AuthorizeID(server))
	cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.Certificates[0].Raw, rogue.Cert.Raw}, PrivateKey: leaf.PrivateKey}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
}
