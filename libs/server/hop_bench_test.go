package server

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/devkit/spiffetest"
	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// BenchmarkHop measures one zero-trust hop end to end on loopback: the gateway's mTLS client
// (a kept-alive connection) calls the account service's real router (tracing, limits,
// Identify from the client certificate, the request log, the authorisation audit), the
// internal-JWT check (a verified-token cache hit, as on 99.99% of requests), the route's
// Require and the handler's Check on the account it "loaded". The audit lines go to a file
// through the writer services use, as they go to the service's standard error.
//
// "plain" is the floor: the same handler with no middleware over plain HTTP, so mtls minus
// plain is what the platform adds per hop in this process, zero trust and the middleware
// the zero-trust-off build keeps (tracing, limits, request log) together; tools/pathbench
// measures the hop on the real stacks against that build.
func BenchmarkHop(b *testing.B) {
	topo := topology.Default()
	self, _ := topo.Workload("bank-a/account")
	gateway, _ := topo.Workload("bank-a/gateway")
	edge, _ := topo.Workload("edge")
	issuer, err := usertoken.NewIssuer(edge.ID)
	if err != nil {
		b.Fatal(err)
	}
	alice, err := usertoken.UserID("bank-a", "alice")
	if err != nil {
		b.Fatal(err)
	}
	token, err := issuer.Mint(b.Context(), usertoken.Claims{User: alice, Tenant: "bank-a", Roles: []string{authz.RoleCustomer}})
	if err != nil {
		b.Fatal(err)
	}
	account := func(az *authz.Engine) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if az != nil {
				res := authz.Resource{Kind: "account", ID: chi.URLParam(r, "accountID"), Owner: alice, Tenant: "bank-a"}
				if err := az.Check(r.Context(), "accounts:read", res); err != nil {
					problem.Write(w, r, err)
					return
				}
			}
			WriteJSON(w, http.StatusOK, map[string]string{"id": "acc-42", "balance": "10.00"})
		}
	}

	// router is the account service's real router in mode, its audit lines going to a file.
	router := func(b *testing.B, mode transport.Mode) http.Handler {
		f, err := os.Create(filepath.Join(b.TempDir(), "stderr"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		az, err := authz.New(b.Context(), authz.Service{Workload: self.Name, Tenant: self.Tenant, ID: self.ID}, topo,
			authz.WithRegisterer(prometheus.NewRegistry()), authz.WithBufferedAuditWriter(f))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(az.Close)
		rt := &Runtime{Env: Env{Mode: mode}, Topology: topo, Self: self,
			Log: slog.New(slog.NewJSONHandler(io.Discard, nil)), Authz: az, Tenants: NewConcurrency(64),
			Tokens: usertoken.NewVerifier(issuer, self.Tenant, edge.ID)}
		r := rt.Router()
		r.With(rt.UserToken, az.Require("accounts:read")).Get("/v1/accounts/{accountID}", account(az))
		return r
	}

	b.Run("mtls", func(b *testing.B) {
		r := router(b, transport.Direct)
		ca := spiffetest.NewCA(b, self.ID.TrustDomain())
		bundle := ca.Bundle()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: r}
		go srv.Serve(tls.NewListener(ln, transport.ServerTLS(spiffetest.Source{SVID: ca.SVID(b, self.ID), Bundle: bundle},
			topo.AllowedCallers(self.Name))))
		defer srv.Close()
		client := transport.Client(spiffetest.Source{SVID: ca.SVID(b, gateway.ID), Bundle: bundle}, self.ID)
		runHop(b, client, "https://"+ln.Addr().String()+"/v1/accounts/acc-42", token, nil)
	})

	// mesh is the same router over plain HTTP, the caller named by the sidecar's header:
	// mtls minus mesh is what TLS itself costs the hop.
	b.Run("mesh", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: router(b, transport.Mesh)}
		go srv.Serve(ln)
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
		xfcc := http.Header{"X-Forwarded-Client-Cert": {"By=" + self.ID.String() + ";URI=" + gateway.ID.String()}}
		runHop(b, client, "http://"+ln.Addr().String()+"/v1/accounts/acc-42", token, xfcc)
	})

	b.Run("plain", func(b *testing.B) {
		r := chi.NewRouter()
		r.Get("/v1/accounts/{accountID}", account(nil))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: r}
		go srv.Serve(ln)
		defer srv.Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
		runHop(b, client, "http://"+ln.Addr().String()+"/v1/accounts/acc-42", token, nil)
	})
}

// runHop sends GET url with the token and hdr, sequentially over one kept-alive connection.
func runHop(b *testing.B, client *http.Client, url, token string, hdr http.Header) {
	b.Helper()
	req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+token)
	do := func() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	do() // handshake, and the token's one signature check, outside the timed loop
	b.ReportAllocs()
	for b.Loop() {
		do()
	}
}
