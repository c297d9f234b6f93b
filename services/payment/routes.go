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
// source account or the payment once they have loaded it.
func NewServer(rt *server.Runtime, peers []*server.Peer, payments Payments, ledger *LedgerClient) http.Handler {
	r := rt.Router()
	addRoutes(r, rt, peers, &handlers{az: rt.Authz, payments: payments, ledger: ledger, tenant: rt.Self.Tenant})
	return r
}

func addRoutes(r chi.Router, rt *server.Runtime, peers []*server.Peer, h *handlers) {
	az := rt.Authz
	rt.Diagnostics(r, "whoami", peers)

	r.With(rt.UserToken, az.Require("payments:create", authz.FromSameTenant("gateway"))).Post("/v1/payments", problem.Handle(h.create))
	r.With(rt.UserToken, az.Require("payments:read", authz.FromSameTenant("gateway"))).Get("/v1/payments/{paymentID}", problem.Handle(h.get))
}
