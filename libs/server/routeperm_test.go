package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/topology"
)

// TestRoutePermissionsArePublished builds routes with a real engine's Require and checks the
// health port's gauge carries each route's permission and restriction, as the console reads
// them.
func TestRoutePermissionsArePublished(t *testing.T) {
	topo := topology.Default()
	w, _ := topo.Workload("bank-b/ledger")
	az, err := authz.New(context.Background(), authz.Service{Workload: w.Name, Tenant: w.Tenant, ID: w.ID}, topo,
		authz.WithRegisterer(prometheus.NewRegistry()), authz.WithAuditWriter(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	r := chi.NewRouter()
	r.With(az.Require("ledger:post", authz.FromSameTenant("payment"))).Post("/v1/postings", noop)
	r.With(az.Require("whoami", authz.WorkloadOnly())).Get("/internal/whoami", noop)
	rt := &Runtime{Log: slog.New(slog.DiscardHandler)}
	rt.publishRoutes(r)
	for _, labels := range [][4]string{
		{"POST", "/v1/postings", "ledger:post", "bank-b/payment"},
		{"GET", "/internal/whoami", "whoami", ""},
	} {
		if got := testutil.ToFloat64(RoutePermissionInfo().WithLabelValues(labels[:]...)); got != 1 {
			t.Errorf("%v published as %v, want 1", labels, got)
		}
	}
}
