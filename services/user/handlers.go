package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/jsonbody"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/services/user/store"
)

// Users is what the handlers need from the user store.
type Users interface {
	Get(ctx context.Context, id uuid.UUID) (store.User, error)
}

// peerTimeout bounds a call to the account service; the gateway's own budget is longer.
const peerTimeout = 5 * time.Second

type handlers struct {
	az       *authz.Engine
	users    Users
	accounts *server.Peer
	tenant   string
}

func (h *handlers) me(w http.ResponseWriter, r *http.Request) error {
	id, err := server.UserUUID(r.Context(), h.tenant)
	if err != nil {
		return err
	}
	return h.show(w, r, id)
}

func (h *handlers) get(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathUUID(r, "userID")
	if err != nil {
		return err
	}
	return h.show(w, r, id)
}

// show decides on the user before reading it: the resource's owner is the user itself, so
// a refused caller does not even learn whether the ID exists.
func (h *handlers) show(w http.ResponseWriter, r *http.Request, id uuid.UUID) error {
	if err := h.az.Check(r.Context(), "users:read", h.resource(id)); err != nil {
		return err
	}
	u, err := h.users.Get(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return problem.Errorf(problem.ErrNotFound, "no such user")
	}
	if err != nil {
		return err
	}
	server.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (h *handlers) accountsOf(w http.ResponseWriter, r *http.Request) error {
	id, err := server.PathUUID(r, "userID")
	if err != nil {
		return err
	}
	if err := h.az.Check(r.Context(), "accounts:read", h.resource(id)); err != nil {
		return err
	}
	return h.relay(w, r, http.MethodGet, "/v1/users/"+id.String()+"/accounts", nil)
}

// openAccount checks that the new account's owner is a customer of this tenant (the user
// service holds the users; the account service does not) and asks the account service to
// open it, which decides accounts:open again.
func (h *handlers) openAccount(w http.ResponseWriter, r *http.Request) error {
	body, err := jsonbody.ReadAll(r.Body, 1<<10)
	if err != nil {
		return err
	}
	ownerID, err := openAccountOwner(body)
	if err != nil {
		return err
	}
	if err := h.az.Check(r.Context(), "accounts:open", h.resource(ownerID)); err != nil {
		return err
	}
	owner, err := h.users.Get(r.Context(), ownerID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return problem.Errorf(problem.ErrUnprocessable, "owner_id is not a user of this tenant")
	case err != nil:
		return err
	case owner.Role != authz.RoleCustomer:
		return problem.Errorf(problem.ErrUnprocessable, "accounts are opened for customers only")
	}
	return h.relay(w, r, http.MethodPost, "/v1/accounts", body)
}

// openAccountOwner reads the owner of an open-account body. Only the owner is read here;
// the account service parses the whole body strictly, and the owner it reads must be the
// one decided on here (FuzzOpenAccountOwner).
func openAccountOwner(body []byte) (uuid.UUID, error) {
	// Decoded with the platform's strict decoder, so the owner decided on here is the one the
	// account service reads: a duplicate or case-folded owner_id is refused on both sides.
	// The other members are the account service's to validate.
	var req struct {
		OwnerID  uuid.UUID       `json:"owner_id"`
		Name     json.RawMessage `json:"name"`
		Currency json.RawMessage `json:"currency"`
	}
	if err := jsonbody.Unmarshal(body, &req); err != nil {
		return uuid.Nil, err
	}
	if req.OwnerID == uuid.Nil {
		return uuid.Nil, problem.Errorf(problem.ErrBadRequest, "request body: owner_id is required")
	}
	return req.OwnerID, nil
}

// relay calls the account service and passes its answer (JSON or problem+json) through.
func (h *handlers) relay(w http.ResponseWriter, r *http.Request, method, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(r.Context(), peerTimeout)
	defer cancel()
	resp, err := h.accounts.Call(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Type", "Location", "Cache-Control"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
	return nil
}

func (h *handlers) resource(id uuid.UUID) authz.Resource {
	return authz.Resource{Kind: "user", ID: id.String(), Owner: server.OwnerID(h.tenant, id), Tenant: h.tenant}
}
