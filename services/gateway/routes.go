package main

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/server"
)

// NewServer returns the tenant's public API. The edge has already exchanged the client's
// token and stripped the tenant prefix, so routes are /v1/...; which API a gateway serves
// follows from the backends the topology lets it call (users and accounts, payments and the
// ledger, or both), keeping the binary tenant-agnostic. The gateway decides each route on
// role and tenant only; the backend that loads the resource decides ownership, and
// re-verifies the forwarded token itself.
func NewServer(rt *server.Runtime, peers []*server.Peer) (http.Handler, error) {
	halves, err := apiHalves(rt)
	if err != nil {
		return nil, err
	}
	doc, err := openAPIDocument(halves, rt.Self.Tenant)
	if err != nil {
		return nil, err
	}
	r := rt.Router()
	addRoutes(r, rt, peers, halves, doc)
	return r, nil
}

// apiHalves names the halves of the catalogue's public API this gateway fronts, from the
// backends of its own tenant the topology lets it call: "retail" (user and account),
// "payments" (payment and ledger), or both for a tenant that runs all five services. The
// two halves' routes are disjoint (method and pattern), so one router serves both.
func apiHalves(rt *server.Runtime) ([]string, error) {
	calls := func(service string) bool {
		w, ok := rt.Topology.TenantWorkload(rt.Self.Tenant, service)
		return ok && rt.Topology.MayCall(rt.Self.Name, w.Name)
	}
	var halves []string
	if calls("user") && calls("account") {
		halves = append(halves, "retail")
	}
	if calls("payment") && calls("ledger") {
		halves = append(halves, "payments")
	}
	if len(halves) == 0 {
		return nil, fmt.Errorf("gateway %s: the topology gives it no known backends (want user+account and/or payment+ledger)", rt.Self.Name)
	}
	return halves, nil
}

func addRoutes(r chi.Router, rt *server.Runtime, peers []*server.Peer, halves []string, doc []byte) {
	az := rt.Authz
	// The front door: the edge proxies to the gateway locally and in compose; in Kubernetes
	// Emissary-ingress forwards after the edge, as its AuthService, exchanged the token.
	front := authz.From("edge", "emissary-ingress")
	// Internal diagnostics are for workloads, never for a user: the chain fans out to every
	// backend, so a client reaching it through the edge could multiply its load. The edge
	// refuses /internal/ paths; here "diagnostics", which no role grants, refuses any request
	// that carries a user (a verified one; a bad token is still a 401).
	rt.Diagnostics(r, "diagnostics", peers)

	// The API description is not secret, but like everything here it is served only over
	// mTLS to the edge; a user token, when present, must still verify.
	r.With(rt.OptionalUserToken, az.Require("whoami", authz.WorkloadOnly(), front)).Get("/v1/openapi.yaml", serveDocument(doc))

	peer := func(service string) *server.Peer {
		for _, p := range peers {
			if w, ok := rt.Topology.Workload(p.Name); ok && w.Service == service {
				return p
			}
		}
		return nil
	}
	user, account, payment, ledger := peer("user"), peer("account"), peer("payment"), peer("ledger")
	if slices.Contains(halves, "retail") {
		r.With(rt.UserToken, az.Require("users:read", front)).Get("/v1/users/me", forward(user))
		r.With(rt.UserToken, az.Require("users:read", front)).Get("/v1/users/{userID}", forward(user))
		r.With(rt.UserToken, az.Require("accounts:read", front)).Get("/v1/users/{userID}/accounts", forward(user))
		r.With(rt.UserToken, az.Require("accounts:read", front)).Get("/v1/accounts/{accountID}", forward(account))
		// Through the user service, which checks the owner is a customer of the tenant.
		r.With(rt.UserToken, az.Require("accounts:open", front)).Post("/v1/accounts", forward(user))
	}
	if slices.Contains(halves, "payments") {
		r.With(rt.UserToken, az.Require("accounts:read", front)).Get("/v1/accounts", forward(ledger))
		r.With(rt.UserToken, az.Require("accounts:read", front)).Get("/v1/accounts/{accountID}/balance", forward(ledger))
		r.With(rt.UserToken, az.Require("ledger:read", front)).Get("/v1/accounts/{accountID}/entries", forward(ledger))
		r.With(rt.UserToken, az.Require("payments:create", front)).Post("/v1/payments", forward(payment))
		r.With(rt.UserToken, az.Require("payments:read", front)).Get("/v1/payments/{paymentID}", forward(payment))
	}
}
