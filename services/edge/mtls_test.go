package main

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/spiffetest"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// TestJWKSOverMTLS serves the edge's JWKS with the TLS config main uses and fetches it the
// way every service does: transport.Client bound to the edge's SPIFFE ID.
func TestJWKSOverMTLS(t *testing.T) {
	topo := topology.Default()
	edgeW, _ := topo.Workload("edge")
	gwW, _ := topo.Workload("bank-a/gateway")
	userW, _ := topo.Workload("bank-a/user")
	ca := spiffetest.NewCA(t, topo.TrustDomain)

	minter, err := usertoken.NewIssuer(edgeW.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Not httptest's StartTLS: it would add its own certificate and serve that instead.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewInternalServer(deps{Minter: minter}),
		TLSConfig: transport.ServerTLSAnyMember(ca.Source(t, edgeW.ID), topo.TrustDomain),
		ErrorLog:  log.New(io.Discard, "", 0)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()

	alice, _ := demo.UserByName("alice@bank-a")
	uid, err := usertoken.UserID("bank-a", alice.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := minter.Mint(context.Background(), usertoken.Claims{User: uid, Tenant: "bank-a"})
	if err != nil {
		t.Fatal(err)
	}
	quiet := usertoken.WithLogger(slog.New(slog.DiscardHandler))
	jwks := "https://" + ln.Addr().String() + "/.well-known/jwks.json"

	// Any workload of the trust domain may read the keys, once it is sure it reached the edge.
	keys := usertoken.NewRemoteKeys(transport.Client(ca.Source(t, userW.ID), edgeW.ID), jwks, quiet)
	if _, err := usertoken.NewVerifier(keys, "bank-a", edgeW.ID).Verify(context.Background(), tok); err != nil {
		t.Errorf("Verify via JWKS over mTLS = %v", err)
	}
	// A client that expects a different server (here: the gateway) refuses the edge's
	// certificate, so it never trusts keys from whoever answered.
	wrong := usertoken.NewRemoteKeys(transport.Client(ca.Source(t, userW.ID), gwW.ID), jwks, quiet)
	if _, err := usertoken.NewVerifier(wrong, "bank-a", edgeW.ID).Verify(context.Background(), tok); !errors.Is(err, usertoken.ErrUnknownKey) {
		t.Errorf("Verify via a client bound to another ID = %v, want ErrUnknownKey", err)
	}
	// A client from another trust domain is refused at the handshake.
	outsider := spiffetest.NewCA(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	foreign := usertoken.NewRemoteKeys(transport.Client(outsider.Source(t, spiffeid.RequireFromPath(outsider.TD, "/ns/x/sa/y")), edgeW.ID), jwks, quiet)
	if _, err := foreign.Key(context.Background(), "any"); !errors.Is(err, usertoken.ErrUnknownKey) {
		t.Errorf("Key via a foreign trust domain = %v, want a refusal", err)
	}
}
