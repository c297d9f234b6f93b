package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	// Other tests publish into the same process-wide gauge, so each series is read alone.
	for _, r := range want {
		if got := testutil.ToFloat64(RouteInfo().WithLabelValues(r.Method, r.Pattern)); got != 1 {
			t.Errorf("%s published as %v, want 1", r, got)
		}
	}
}

func TestHandlePublishesServeMuxRoutes(t *testing.T) {
	mux := http.NewServeMux()
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	Handle(mux, "GET /healthz-test", noop)
	Handle(mux, "/tenant-test/", noop)
	for _, want := range [][2]string{{"GET", "/healthz-test"}, {"*", "/tenant-test/"}} {
		if got := testutil.ToFloat64(RouteInfo().WithLabelValues(want[0], want[1])); got != 1 {
			t.Errorf("%s %s published as %v, want 1", want[0], want[1], got)
		}
	}
	if _, pattern := mux.Handler(httptest.NewRequest("GET", "/tenant-test/x", nil)); pattern != "/tenant-test/" {
		t.Errorf("mux routes /tenant-test/x to %q, want the registered prefix", pattern)
	}
}
