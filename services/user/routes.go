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
// route below then names the permission it needs, and the handlers decide ownership of the
// user in the path.
func NewServer(rt *server.Runtime, peers []*server.Peer, users Users, accounts *server.Peer) http.Handler {
	r := rt.Router()
	addRoutes(r, rt, peers, &handlers{az: rt.Authz, users: users, accounts: accounts, tenant: rt.Self.Tenant})
	return r
}

func addRoutes(r chi.Router, rt *server.Runtime, peers []*server.Peer, h *handlers) {
	az := rt.Authz
	rt.Diagnostics(r, "whoami", peers)

	r.With(rt.UserToken, az.Require("users:read", authz.FromSameTenant("gateway"))).Get("/v1/users/me", problem.Handle(h.me))
	r.With(rt.UserToken, az.Require("users:read", authz.FromSameTenant("gateway"))).Get("/v1/users/{userID}", problem.Handle(h.get))
	// Both call the account service with the user's token, which decides again.
	r.With(rt.UserToken, az.Require("accounts:read", authz.FromSameTenant("gateway"))).Get("/v1/users/{userID}/accounts", problem.Handle(h.accountsOf))
	r.With(rt.UserToken, az.Require("accounts:open", authz.FromSameTenant("gateway"))).Post("/v1/accounts", problem.Handle(h.openAccount))
}
