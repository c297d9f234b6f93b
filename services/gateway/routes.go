package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/server"
)

// NewServer returns the service's HTTP API. Only workloads the topology allows to call
// this service get past the mTLS handshake (and, in mesh mode, the XFCC check); every
// route below then names the permission it needs.
func NewServer(rt *server.Runtime, peers []*server.Peer) http.Handler {
	r := rt.Router()
	addRoutes(r, rt, peers)
	return r
}

func addRoutes(r chi.Router, rt *server.Runtime, peers []*server.Peer) {
	az := rt.Authz
	r.With(rt.OptionalUserToken, az.Require("whoami", authz.WorkloadOnly())).Get("/internal/whoami", rt.WhoAmI)
	r.With(rt.OptionalUserToken, az.Require("whoami", authz.WorkloadOnly())).Get("/internal/chain", rt.Chain(peers))
}
