package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/payment/store"
)

// Payments is what the handlers need from the payment store.
type Payments interface {
	Pay(ctx context.Context, principal uuid.UUID, key string, req store.Request, ledger store.Ledger) (store.Result, error)
	Get(ctx context.Context, id uuid.UUID) (store.Payment, error)
}

type handlers struct {
	az       *authz.Engine
	payments Payments
	ledger   *LedgerClient
	tenant   string
}

func (h *handlers) create(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return problem.Errorf(problem.ErrBadRequest, "the Idempotency-Key header is required")
	}
	if err := store.ValidKey(key); err != nil {
		return problem.Errorf(problem.ErrBadRequest, err.Error())
	}
	req, err := store.DecodeRequest(r.Body)
	if err != nil {
		// DecodeRequest's messages name the field and rule, never stored data.
		return problem.Errorf(problem.ErrBadRequest, err.Error())
	}
	principal, err := server.UserUUID(ctx, h.tenant)
	if err != nil {
		return err
	}
	// The payer must own the source account. The ledger knows the owner; the decision is
	// ours, with the loaded owner in the policy input. An unknown account is decided as one
	// nobody owns, so it is refused exactly like a neighbour's.
	src, err := h.ledger.Account(ctx, req.From)
	if err != nil && !errors.Is(err, errUnknownAccount) {
		return err
	}
	res := authz.Resource{Kind: "ledger_account", ID: req.From.String(), Owner: server.OwnerID(h.tenant, src.OwnerID), Tenant: h.tenant}
	if err := h.az.Check(ctx, "payments:create", res); err != nil {
		return err
	}
	if errors.Is(err, errUnknownAccount) {
		return problem.With(problem.ErrUnprocessable, "the source account does not exist", map[string]any{"reason": "unknown_account"})
	}
	// The payer's own account, so its currency may be told; every later ledger refusal
	// other than insufficient funds is then about to_account (customerReason).
	if src.Balance.Currency != req.Amount.Currency {
		return problem.With(problem.ErrUnprocessable, "from_account is not in the payment's currency",
			map[string]any{"reason": ReasonCurrencyMismatch})
	}
	out, err := h.payments.Pay(ctx, principal, key, req, h.ledger)
	switch {
	case errors.Is(err, store.ErrKeyReused):
		return problem.Errorf(problem.ErrUnprocessable, "this Idempotency-Key was used with a different request")
	case errors.Is(err, store.ErrInProgress):
		return problem.Errorf(problem.ErrConflict, "a request with this Idempotency-Key is in progress; retry later")
	case errors.Is(err, store.ErrInvalidRequest):
		return problem.Errorf(problem.ErrBadRequest, err.Error())
	case err != nil:
		return err
	}
	if out.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if out.StatusCode == http.StatusUnprocessableEntity {
		// A refused payment is a stored outcome, replayed identically on retry.
		return problem.With(problem.ErrUnprocessable, "the payment was rejected",
			map[string]any{"reason": out.Payment.Failure, "payment_id": out.Payment.ID.String()})
	}
	w.Header().Set("Location", "/v1/payments/"+out.Payment.ID.String())
	server.WriteJSON(w, out.StatusCode, out.Payment)
	return nil
}

func (h *handlers) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathUUID(r, "paymentID")
	if err != nil {
		return err
	}
	p, err := h.payments.Get(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		// Decided as a payment nobody owns: customers cannot tell unknown from not theirs.
		return server.Unknown(r.Context(), h.az, "payments:read",
			authz.Resource{Kind: "payment", ID: id.String(), Tenant: h.tenant}, "no such payment")
	}
	if err != nil {
		return err
	}
	if err := h.az.Check(r.Context(), "payments:read", authz.Resource{Kind: "payment", ID: id.String(),
		Owner: server.OwnerID(h.tenant, p.RequestedBy), Tenant: h.tenant}); err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, p)
	return nil
}
