package e2e

import (
	"net/http"

	"github.com/ztbank/ztbank/libs/topology"
)

// EdgeRoute is one route of the edge's public listener other than the tenant proxy (which the
// front-door Routes cover), with the calls that exercise it. Like ServiceRoutes it is checked
// against the route table the running edge publishes.
type EdgeRoute struct {
	Method  string // as published: "*" for a ServeMux prefix that answers every method
	Pattern string
	// Calls builds the calls made on the route, from the topology's workloads and the
	// hand-written workload table.
	Calls func(topo *topology.Topology, calls map[string][]string) []EdgeCall
}

// Name is "edge METHOD pattern", as coverage reports it.
func (r EdgeRoute) Name() string { return "edge " + r.Method + " " + r.Pattern }

// EdgeCall is one request to the edge's public listener.
type EdgeCall struct {
	Method, Path string
	ClientSVID   string // workload whose SVID the client presents; "" for none
	User         string // demo user whose external access token is sent; "" for none
	Want         Expectation
}

// EdgeRoutes is the edge's public surface besides the tenant proxy.
var EdgeRoutes = []EdgeRoute{
	// ext_authz answers with an internal JWT, so only the ingress may use it: every
	// workload's SVID, and none, with a valid token; then the ingress without a token, with a
	// user of another tenant, and on a tenant that does not exist.
	{Method: "*", Pattern: "/authz/", Calls: func(topo *topology.Topology, calls map[string][]string) []EdgeCall {
		const path = "/authz/bank-a/v1/users/me"
		out := []EdgeCall{{Method: "GET", Path: path, User: "alice@bank-a", Want: edgeRefused(http.StatusForbidden)}}
		for _, w := range topo.Workloads {
			want := edgeRefused(http.StatusForbidden)
			if mayCall(calls, w.Name, "edge") {
				want = ok200
			}
			out = append(out, EdgeCall{Method: "GET", Path: path, ClientSVID: w.Name, User: "alice@bank-a", Want: want})
		}
		return append(out,
			EdgeCall{Method: "GET", Path: path, ClientSVID: "emissary-ingress", Want: edgeRefused(http.StatusUnauthorized)},
			EdgeCall{Method: "GET", Path: path, ClientSVID: "emissary-ingress", User: "bob@bank-b", Want: edgeRefused(http.StatusForbidden)},
			EdgeCall{Method: "GET", Path: "/authz/bank-z/v1/users/me", ClientSVID: "emissary-ingress", User: "alice@bank-a", Want: edgeRefused(http.StatusForbidden)},
		)
	}},
	{Method: "GET", Pattern: "/healthz", Calls: func(*topology.Topology, map[string][]string) []EdgeCall {
		return []EdgeCall{{Method: "GET", Path: "/healthz", Want: ok200}}
	}},
	// Anything else is nobody's route: the edge says so before looking at a token.
	{Method: "*", Pattern: "/", Calls: func(*topology.Topology, map[string][]string) []EdgeCall {
		return []EdgeCall{
			{Method: "GET", Path: "/bank-z/v1/users/me", User: "alice@bank-a", Want: Expectation{http.StatusNotFound, LayerNoRoute}},
			{Method: "GET", Path: "/", Want: Expectation{http.StatusNotFound, LayerNoRoute}},
		}
	}},
}

func edgeRefused(status int) Expectation { return Expectation{status, LayerEdge} }
