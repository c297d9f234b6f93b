package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/ledger/ledgerapi"
	"github.com/ztbank/ztbank/services/ledger/store"
)

// referenceLookup is the store method the reconcile route needs (*store.Store has it). It is
// asserted rather than added to Ledger so the handlers' test doubles need not grow.
type referenceLookup interface {
	TransactionByReference(ctx context.Context, reference string) (store.Transaction, error)
}

// postingByReference answers whether a posting with the reference exists: 200 with its
// transaction ID, or 404. The payment service's recovery asks it for a pending payment whose
// outcome was lost (the reference is the payment ID), with no user behind the call, so the
// route is workload-only and admits the same tenant's payment service alone (routes.go). It
// returns the transaction ID only: no amounts, accounts or descriptions.
func (h *handlers) postingByReference(w http.ResponseWriter, r *http.Request) error {
	ref := chi.URLParam(r, "reference")
	if ref == "" || len(ref) > ledgerapi.MaxReferenceBytes {
		return problem.Errorf(problem.ErrBadRequest, fmt.Sprintf("reference must be 1 to %d bytes", ledgerapi.MaxReferenceBytes))
	}
	lookup, ok := h.ledger.(referenceLookup)
	if !ok {
		return fmt.Errorf("ledger store %T cannot look up references", h.ledger)
	}
	t, err := lookup.TransactionByReference(r.Context(), ref)
	if errors.Is(err, store.ErrNotFound) {
		return problem.Errorf(problem.ErrNotFound, "no posting with this reference")
	}
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, ledgerapi.PostingResult{TransactionID: t.ID, Replayed: true})
	return nil
}
