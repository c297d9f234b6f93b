package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// UserUUID returns the ID, as the tenant's database stores it, of the user the request's
// verified internal JWT speaks for. It checks again that the user belongs to tenant, the
// service's own (rt.Self.Tenant), and not merely to the tenant the token claims: the
// verifier already requires the token's audience to be this tenant, and this second check
// keeps a handler from ever reading another tenant's user ID as one of its own. Any failure
// is a 403 problem that says nothing about the token.
func UserUUID(ctx context.Context, tenant string) (uuid.UUID, error) {
	u := caller.From(ctx).User
	if tenant == "" || u.Tenant != tenant || usertoken.CheckUser(u.ID, tenant) != nil {
		return uuid.Nil, problem.Errorf(problem.ErrForbidden, "the request carries no user of this tenant")
	}
	id, err := uuid.Parse(strings.TrimPrefix(u.ID.Path(), "/user/"))
	if err != nil {
		return uuid.Nil, problem.Errorf(problem.ErrForbidden, "the user ID is not one this service knows")
	}
	return id, nil
}

// OwnerID is the SPIFFE ID of the tenant's user who owns a resource, for the policy input;
// zero when nobody owns it (uuid.Nil, as for the ledger's system accounts).
func OwnerID(tenant string, owner uuid.UUID) spiffeid.ID {
	if owner == uuid.Nil {
		return spiffeid.ID{}
	}
	id, err := usertoken.UserID(tenant, owner.String())
	if err != nil {
		return spiffeid.ID{}
	}
	return id
}

// Unknown answers for a resource a handler looked up and did not find: it is decided as res,
// a resource of the tenant that nobody owns, so a customer gets the same 403 for a made-up ID
// as for a neighbour's and cannot probe which IDs exist; a caller the policy lets read
// any resource of the tenant (staff) gets a 404 problem with detail notFound.
func Unknown(ctx context.Context, az *authz.Engine, perm string, res authz.Resource, notFound string) error {
	if err := az.Check(ctx, perm, res); err != nil {
		return err
	}
	return problem.Errorf(problem.ErrNotFound, notFound)
}

// PathUUID reads the route parameter name (such as "accountID" in /v1/accounts/{accountID})
// as a UUID; anything else is a 400 problem naming the parameter.
func PathUUID(r *http.Request, name string) (uuid.UUID, error) {
	id, err := uuid.Parse(chi.URLParam(r, name))
	if err != nil {
		return uuid.Nil, problem.Errorf(problem.ErrBadRequest, name+" must be a UUID")
	}
	return id, nil
}
