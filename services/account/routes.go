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
// route below then names the permission it needs, and the handlers decide ownership once
// they know the account's owner.
func NewServer(rt *server.Runtime, peers []*server.Peer, accounts Accounts) http.Handler {
	r := rt.Router()
	addRoutes(r, rt, peers, &handlers{az: rt.Authz, accounts: accounts, tenant: rt.Self.Tenant})
	return r
}

func addRoutes(r chi.Router, rt *server.Runtime, peers []*server.Peer, h *handlers) {
	az := rt.Authz
	rt.Diagnostics(r, "whoami", peers)

	r.With(rt.UserToken, az.Require("accounts:read", authz.FromSameTenant("gateway"))).Get("/v1/accounts/{accountID}", problem.Handle(h.get))
	// The user service fronts these two: it lists a user's accounts, and it checks that the
	// owner of a new account is a customer of the tenant before asking for the account.
	r.With(rt.UserToken, az.Require("accounts:read", authz.FromSameTenant("user"))).Get("/v1/users/{userID}/accounts", problem.Handle(h.listByOwner))
	r.With(rt.UserToken, az.Require("accounts:open", authz.FromSameTenant("user"))).Post("/v1/accounts", problem.Handle(h.open))
}
