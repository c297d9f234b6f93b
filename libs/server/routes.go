package server

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/telemetry"
)

// RouteInfoMetric names the gauge that publishes a service's route table on its health
// port. The isolation suite reads it from every running service and fails when a served
// route has no cases, so the suite's route table cannot fall behind the routers.
const RouteInfoMetric = "ztbank_route_info"

// Route is one route of a service's API as its router serves it.
type Route struct {
	Method  string `json:"method"`
	Pattern string `json:"pattern"`
}

// String is "METHOD pattern".
func (r Route) String() string { return r.Method + " " + r.Pattern }

// RouteTable walks the chi router h (what a service's NewServer returns) and lists every
// route it serves, sorted by pattern then method.
func RouteTable(h http.Handler) ([]Route, error) {
	routes, ok := h.(chi.Routes)
	if !ok {
		return nil, fmt.Errorf("handler %T is not a chi router: its routes cannot be listed", h)
	}
	var out []Route
	err := chi.Walk(routes, func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, Route{Method: method, Pattern: pattern})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk routes: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pattern != out[j].Pattern {
			return out[i].Pattern < out[j].Pattern
		}
		return out[i].Method < out[j].Method
	})
	return out, nil
}

// RouteInfo is the gauge behind RouteInfoMetric, registered on the default registry the
// first time it is needed.
var RouteInfo = telemetry.Lazy(func() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: RouteInfoMetric,
		Help: "Routes this service's API serves, one series per route (chi.Walk over its router at start-up); value 1.",
	}, []string{"method", "route"})
})

// publishRoutes puts api's route table on the health port's /metrics. A handler that is not
// a chi router publishes nothing and is logged: the isolation suite then fails on the
// missing table rather than passing on an empty one.
func (rt *Runtime) publishRoutes(api http.Handler) {
	routes, err := RouteTable(api)
	if err != nil {
		rt.Log.Warn("route table not published", "err", err.Error())
		return
	}
	g := RouteInfo()
	for _, r := range routes {
		g.WithLabelValues(r.Method, r.Pattern).Set(1)
	}
	if chiRoutes, ok := api.(chi.Routes); ok {
		perms, err := authz.RoutePermissions(chiRoutes)
		if err != nil {
			rt.Log.Warn("route permissions not published", "err", err.Error())
			return
		}
		pg := RoutePermissionInfo()
		for _, p := range perms {
			pg.WithLabelValues(p.Method, p.Pattern, p.Permission, strings.Join(p.From, ",")).Set(1)
		}
	}
}

// RoutePermissionMetric names the gauge that publishes, beside the route table, the
// permission each route's Require demands and the workloads it is restricted to, read from
// the built router (authz.RoutePermissions). The console shows it when a workload is hovered.
const RoutePermissionMetric = "ztbank_route_permission"

// RoutePermissionInfo is the gauge behind RoutePermissionMetric, registered on the default
// registry the first time it is needed.
var RoutePermissionInfo = telemetry.Lazy(func() *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: RoutePermissionMetric,
		Help: "Permission each route of this service's API requires, and the workloads it is restricted to (comma-separated, empty: any the allowlist admits); value 1.",
	}, []string{"method", "route", "permission", "from"})
})

// Handle registers h on mux under a ServeMux pattern ("GET /healthz", or a path prefix like
// "/<tenant>/" that answers every method) and publishes the route as RouteInfoMetric, for
// services whose router is an http.ServeMux, which cannot be walked. Method-less patterns are
// published with method "*".
func Handle(mux *http.ServeMux, pattern string, h http.Handler) {
	mux.Handle(pattern, h)
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "*", pattern
	}
	RouteInfo().WithLabelValues(method, strings.TrimSpace(path)).Set(1)
}
