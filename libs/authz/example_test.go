package authz_test

import (
	"context"
	"net/http"
	"os"

	"github.com/go-chi/chi/v5"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/topology"
)

type ledgerHandlers struct{ az *authz.Engine }

func (h *ledgerHandlers) entries(w http.ResponseWriter, r *http.Request) {
	// The handler loads the account first, then asks about that resource.
	owner := spiffeid.RequireFromString("spiffe://bank-b/user/alice")
	err := h.az.Check(r.Context(), "ledger:read", authz.Resource{Kind: "account", ID: chi.URLParam(r, "accountID"), Owner: owner, Tenant: "bank-b"})
	if err != nil {
		http.Error(w, "forbidden", http.StatusForbidden) // services use problem.Write(w, r, err)
		return
	}
	w.Write([]byte(`{"entries":[]}`))
}

func (h *ledgerHandlers) post(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusCreated)
}

// A service prepares the engine once in run and declares each route's permission in routes.go.
func Example() {
	ctx := context.Background()
	opts, err := authz.OptionsFromEnv(os.Getenv) // test-only policy swap; none in production
	if err != nil {
		panic(err)
	}
	az, err := authz.New(ctx, authz.Service{Workload: "bank-b/ledger", Tenant: "bank-b"}, topology.Default(),
		append(opts, authz.WithAuditWriter(os.Stderr))...)
	if err != nil {
		panic(err) // run returns it; the service does not start
	}
	h := &ledgerHandlers{az: az}

	r := chi.NewRouter()
	r.Use(az.Audit) // one audit line per request
	r.With(az.Require("ledger:read")).Get("/v1/accounts/{accountID}/entries", h.entries)
	r.With(az.Require("ledger:post", authz.FromSameTenant("payment"))).Post("/v1/postings", h.post)

	// In the service's tests: every route carries a Require.
	if err := authz.Guarded(r); err != nil {
		panic(err)
	}
}
