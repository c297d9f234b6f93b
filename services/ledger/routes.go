package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
)

// NewServer returns the service's HTTP API. Only workloads the topology allows to call
// this service get past the mTLS handshake (and, in mesh mode, the XFCC check); every
// route below then names the permission it needs. Routes with an {accountID} also check
// ownership in the handler, once the account is loaded (Require alone decides on the role
// and tenant: the policy sees no owner until the handler supplies the resource).
func NewServer(rt *server.Runtime, peers []*server.Peer, ledger Ledger) http.Handler {
	r := rt.Router()
	addRoutes(r, rt, peers, &handlers{az: rt.Authz, ledger: ledger, tenant: rt.Self.Tenant})
	return r
}

func addRoutes(r chi.Router, rt *server.Runtime, peers []*server.Peer, h *handlers) {
	az := rt.Authz
	rt.Diagnostics(r, "whoami", peers)

	// Public through the gateway: the caller's own accounts, balances and entries.
	r.With(rt.UserToken, az.Require("accounts:read", authz.FromSameTenant("gateway"))).Get("/v1/accounts", problem.Handle(h.listAccounts))
	r.With(rt.UserToken, az.Require("accounts:read", authz.FromSameTenant("gateway"))).Get("/v1/accounts/{accountID}/balance", problem.Handle(h.balance))
	r.With(rt.UserToken, az.Require("ledger:read", authz.FromSameTenant("gateway"))).Get("/v1/accounts/{accountID}/entries", problem.Handle(h.entries))

	// Internal: the payment service looks up who owns an account (it decides ownership for
	// the payment itself) and is the only workload that may post; the posting is also checked
	// here, per debited account, against the user the payment speaks for.
	r.With(rt.UserToken, az.Require("accounts:read", authz.FromSameTenant("payment"))).Get("/v1/accounts/{accountID}", problem.Handle(h.accountOwner))
	r.With(rt.UserToken, az.Require("ledger:post", authz.FromSameTenant("payment"))).Post("/v1/postings", problem.Handle(h.post))
	// Internal, no user: the payment service's recovery asks whether a pending payment's
	// reference was posted (ADR 0996). Only the ledger's own payment service may ask.
	r.With(rt.OptionalUserToken, az.Require("ledger:reconcile", authz.FromSameTenant("payment"), authz.WorkloadOnly())).
		Get("/v1/postings/{reference}", problem.Handle(h.postingByReference))
}
