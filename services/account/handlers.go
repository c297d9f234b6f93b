package main

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/jsonbody"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/account/store"
)

// Accounts is what the handlers need from the account store.
type Accounts interface {
	Get(ctx context.Context, id uuid.UUID) (store.Account, error)
	ListByOwner(ctx context.Context, owner uuid.UUID, limit int) ([]store.Account, error)
	Open(ctx context.Context, owner uuid.UUID, req store.OpenRequest) (store.Account, error)
}

type handlers struct {
	az       *authz.Engine
	accounts Accounts
	tenant   string
}

func (h *handlers) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathUUID(r, "accountID")
	if err != nil {
		return err
	}
	a, err := h.accounts.Get(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		// Decided as an account nobody owns: a customer gets the same 403 for an unknown ID
		// as for a neighbour's, so IDs cannot be probed; staff get the 404.
		return server.Unknown(r.Context(), h.az, "accounts:read",
			authz.Resource{Kind: "account", ID: id.String(), Tenant: h.tenant}, "no such account")
	}
	if err != nil {
		return err
	}
	if err := h.az.Check(r.Context(), "accounts:read", authz.Resource{Kind: "account", ID: a.ID.String(),
		Owner: server.OwnerID(h.tenant, a.OwnerID), Tenant: a.Tenant}); err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (h *handlers) listByOwner(w http.ResponseWriter, r *http.Request) error {
	owner, err := server.PathUUID(r, "userID")
	if err != nil {
		return err
	}
	// The owner is in the path, so the decision needs no database read and a refused
	// caller learns nothing about the user's accounts.
	if err := h.az.Check(r.Context(), "accounts:read", authz.Resource{Kind: "user_accounts", ID: owner.String(),
		Owner: server.OwnerID(h.tenant, owner), Tenant: h.tenant}); err != nil {
		return err
	}
	accts, err := h.accounts.ListByOwner(r.Context(), owner, store.MaxAccountsPerOwner)
	if err != nil {
		return err
	}
	if accts == nil {
		accts = []store.Account{}
	}
	server.WriteJSON(w, http.StatusOK, map[string]any{"accounts": accts})
	return nil
}

// openRequest is the body of POST /v1/accounts.
type openRequest struct {
	OwnerID  uuid.UUID `json:"owner_id"`
	Name     string    `json:"name"`
	Currency string    `json:"currency"`
}

func decodeOpen(r io.Reader) (uuid.UUID, store.OpenRequest, error) {
	var req openRequest
	if err := jsonbody.Read(r, store.MaxRequestBytes, &req); err != nil {
		return uuid.Nil, store.OpenRequest{}, err
	}
	if req.OwnerID == uuid.Nil {
		return uuid.Nil, store.OpenRequest{}, problem.Errorf(problem.ErrBadRequest, "owner_id is required")
	}
	open := store.OpenRequest{Name: req.Name, Currency: req.Currency}
	if err := open.Validate(); err != nil {
		return uuid.Nil, store.OpenRequest{}, problem.Errorf(problem.ErrUnprocessable, err.Error())
	}
	return req.OwnerID, open, nil
}

func (h *handlers) open(w http.ResponseWriter, r *http.Request) error {
	owner, req, err := decodeOpen(r.Body)
	if err != nil {
		return err
	}
	if err := h.az.Check(r.Context(), "accounts:open", authz.Resource{Kind: "user", ID: owner.String(),
		Owner: server.OwnerID(h.tenant, owner), Tenant: h.tenant}); err != nil {
		return err
	}
	a, err := h.accounts.Open(r.Context(), owner, req)
	switch {
	case errors.Is(err, store.ErrConflict):
		return problem.Errorf(problem.ErrConflict, "the customer already has an account with this name")
	case errors.Is(err, store.ErrLimit):
		return problem.Errorf(problem.ErrUnprocessable, "the customer has the maximum number of accounts")
	case errors.Is(err, store.ErrInvalidRequest):
		return problem.Errorf(problem.ErrUnprocessable, err.Error())
	case err != nil:
		return err
	}
	w.Header().Set("Location", "/v1/accounts/"+a.ID.String())
	server.WriteJSON(w, http.StatusCreated, a)
	return nil
}
