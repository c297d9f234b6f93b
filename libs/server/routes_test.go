package server

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRouteTable(t *testing.T) {
	r := chi.NewRouter()
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	r.With(func(h http.Handler) http.Handler { return h }).Get("/v1/accounts/{accountID}", noop)
	r.Post("/v1/postings", noop)
	r.Get("/internal/whoami", noop)
	got, err := RouteTable(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{"GET", "/internal/whoami"}, {"GET", "/v1/accounts/{accountID}"}, {"POST", "/v1/postings"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RouteTable() mismatch (-want +got):\n%s", diff)
	}
	if _, err := RouteTable(http.NewServeMux()); err == nil {
		t.Error("RouteTable(ServeMux) = nil error; a router whose routes cannot be listed must be an error")
	}

	rt := &Runtime{Log: slog.New(slog.DiscardHandler)}
	rt.publishRoutes(r)
	expo := `
# HELP ztbank_route_info Routes this service's API serves, one series per route (chi.Walk over its router at start-up); value 1.
# TYPE ztbank_route_info gauge
ztbank_route_info{method="GET",route="/internal/whoami"} 1
ztbank_route_info{method="GET",route="/v1/accounts/{accountID}"} 1
ztbank_route_info{method="POST",route="/v1/postings"} 1
`
	if err := testutil.CollectAndCompare(RouteInfo(), strings.NewReader(expo), RouteInfoMetric); err != nil {
		t.Error(err)
	}
}
