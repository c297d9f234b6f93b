package main

import (
	"net/http"

	"github.com/ztbank/ztbank/libs/server"
)

// addRoutes lists the whole public surface of the edge. Every tenant route and the ext_authz
// endpoint authenticate through the same exchange; health carries no data. server.Handle also
// publishes each route on the health port, where the isolation suite checks that each has
// cases.
func addRoutes(mux *http.ServeMux, e *edge) {
	for _, tenant := range e.tenants {
		// Exchange: external token verified, user enrolled in this tenant, identity headers
		// refused; then proxied over mTLS to the tenant's gateway with the internal token.
		server.Handle(mux, "/"+tenant+"/", e.limits(e.proxy(tenant)))
	}
	// Emissary AuthService / ext_authz: same exchange; the tenant is the first path segment
	// after the prefix, because Emissary appends the original path to path_prefix.
	server.Handle(mux, e.authzPrefix+"/", e.limits(e.authz()))
	// Public, no identity: liveness only.
	server.Handle(mux, "GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) }))
	server.Handle(mux, "/", e.limits(e.notFound()))
}

// addInternalRoutes lists the mTLS listener's routes. Any workload of the trust domain may
// read the JWKS: it is public data, and the client side checks it is talking to the edge.
func addInternalRoutes(mux *http.ServeMux, e *edge) {
	server.Handle(mux, "GET /.well-known/jwks.json", e.minter.JWKSHandler())
}
