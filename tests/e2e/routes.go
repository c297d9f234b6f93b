// Package e2e is the tenant-isolation suite: every (identity × route × target resource)
// combination, generated from the topology, the demo users and the route table below, run
// against a live deployment and compared with an expected outcome computed from the rules
// (topology, roles, ownership) rather than from the Rego policy or from a previous run.
package e2e

import (
	"strings"

	"github.com/ztbank/ztbank/devkit/demo"
)

// ResourceKind is what a route's path parameter (or body) names.
type ResourceKind string

// Resource kinds the generator knows how to pick targets for.
const (
	NoResource      ResourceKind = ""
	UserResource    ResourceKind = "user"
	AccountResource ResourceKind = "account"
	// PaymentResource targets are payments the suite makes first, one per customer who has
	// an account (payment IDs are the server's; see deployment.paymentOf).
	PaymentResource ResourceKind = "payment"
)

// Route is one API route as a client sees it through the edge, with what the rules need to
// predict its outcome. Adding a route to the suite is adding a row to Routes.
type Route struct {
	// Tenant owns the route: the edge serves it under /<tenant>/.
	Tenant string
	Method string
	// Path is the path below the tenant prefix, with {param} placeholders, e.g.
	// "/v1/users/{userID}". The gateway forwards it unchanged to Service.
	Path string
	// Service is the workload that answers the route when called directly over mTLS,
	// bypassing the edge (topology name, e.g. "bank-a/user").
	Service string
	// Permission is the RBAC permission the route declares (authz.Require).
	Permission string
	// Resource is the kind of resource the {param} (or the body's owner) names.
	Resource ResourceKind
	// WorkloadOnly routes (diagnostics) also admit a workload without a user.
	WorkloadOnly bool
	// Internal routes are not public: the edge refuses them (404) before looking at a
	// token, and no role is granted their permission, so only workloads reach them.
	Internal bool
	// UnknownIsEmpty: for a caller who may read any resource of the tenant, an ID the
	// tenant does not hold yields an empty list (the route lists by owner) rather than 404.
	UnknownIsEmpty bool
	// ForCustomers: the target must be a customer of the tenant (accounts are opened for
	// customers only); anything else is refused as unprocessable (422).
	ForCustomers bool
	// Body builds the JSON request body for a target; nil for routes without one.
	Body func(t Target) string
	// Live is false for routes that are declared here ahead of their implementation: they
	// are left out of the generated cases until they ship, and flipping the flag is the
	// whole change needed to cover them.
	Live bool
}

// Name is "METHOD /tenant/path", how the matrix and the test names show a route.
func (r Route) Name() string { return r.Method + " /" + r.Tenant + r.Path }

// Param is the name of the route's path parameter, or "" when it has none.
func (r Route) Param() string {
	i := strings.IndexByte(r.Path, '{')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(r.Path[i:], '}')
	return r.Path[i+1 : i+j]
}

// Expand replaces the path parameter with id.
func (r Route) Expand(id string) string {
	p := r.Param()
	if p == "" {
		return r.Path
	}
	return strings.Replace(r.Path, "{"+p+"}", id, 1)
}

// Routes is the route table: the diagnostic routes every tenant exposes and the banking
// API of both tenants.
var Routes = []Route{
	{Tenant: "bank-a", Method: "GET", Path: "/internal/whoami", Service: "bank-a/gateway", Permission: "diagnostics", WorkloadOnly: true, Internal: true, Live: true},
	{Tenant: "bank-a", Method: "GET", Path: "/internal/chain", Service: "bank-a/gateway", Permission: "diagnostics", WorkloadOnly: true, Internal: true, Live: true},
	{Tenant: "bank-a", Method: "GET", Path: "/v1/openapi.yaml", Service: "bank-a/gateway", Permission: "whoami", WorkloadOnly: true, Live: true},
	{Tenant: "bank-b", Method: "GET", Path: "/internal/whoami", Service: "bank-b/gateway", Permission: "diagnostics", WorkloadOnly: true, Internal: true, Live: true},
	{Tenant: "bank-b", Method: "GET", Path: "/internal/chain", Service: "bank-b/gateway", Permission: "diagnostics", WorkloadOnly: true, Internal: true, Live: true},
	{Tenant: "bank-b", Method: "GET", Path: "/v1/openapi.yaml", Service: "bank-b/gateway", Permission: "whoami", WorkloadOnly: true, Live: true},

	{Tenant: "bank-a", Method: "GET", Path: "/v1/users/me", Service: "bank-a/user", Permission: "users:read", Live: true},
	{Tenant: "bank-a", Method: "GET", Path: "/v1/users/{userID}", Service: "bank-a/user", Permission: "users:read", Resource: UserResource, Live: true},
	{Tenant: "bank-a", Method: "GET", Path: "/v1/users/{userID}/accounts", Service: "bank-a/user", Permission: "accounts:read", Resource: UserResource,
		UnknownIsEmpty: true, Live: true},
	{Tenant: "bank-a", Method: "GET", Path: "/v1/accounts/{accountID}", Service: "bank-a/account", Permission: "accounts:read", Resource: AccountResource, Live: true},
	{Tenant: "bank-a", Method: "POST", Path: "/v1/accounts", Service: "bank-a/user", Permission: "accounts:open", Resource: UserResource,
		ForCustomers: true, Live: true,
		Body: func(t Target) string {
			return `{"owner_id":"` + t.ID + `","name":"e2e-` + t.Nonce + `","currency":"EUR"}`
		}},

	{Tenant: "bank-b", Method: "GET", Path: "/v1/accounts", Service: "bank-b/ledger", Permission: "accounts:read", Live: true},
	{Tenant: "bank-b", Method: "GET", Path: "/v1/accounts/{accountID}/balance", Service: "bank-b/ledger", Permission: "accounts:read", Resource: AccountResource, Live: true},
	{Tenant: "bank-b", Method: "GET", Path: "/v1/accounts/{accountID}/entries", Service: "bank-b/ledger", Permission: "ledger:read", Resource: AccountResource, Live: true},
	// The target is the source account; one minor unit goes to another bank-b account.
	{Tenant: "bank-b", Method: "POST", Path: "/v1/payments", Service: "bank-b/payment", Permission: "payments:create", Resource: AccountResource, Live: true,
		Body: func(t Target) string {
			return `{"from_account":"` + t.ID + `","to_account":"` + payee(t.ID) + `","amount":{"amount":1,"currency":"EUR"},"reference":"e2e-` + t.Nonce + `"}`
		}},
	{Tenant: "bank-b", Method: "GET", Path: "/v1/payments/{paymentID}", Service: "bank-b/payment", Permission: "payments:read", Resource: PaymentResource, Live: true},
}

// LiveRoutes returns the rows of Routes that are implemented.
func LiveRoutes() []Route {
	var out []Route
	for _, r := range Routes {
		if r.Live {
			out = append(out, r)
		}
	}
	return out
}

// payee is the account a test payment from "from" goes to: the current account of another
// customer, of the payer's own tenant when it has one (for bank-b: dave's, or bob's when dave
// pays), so every tenant that runs payments pays within itself. A payer without such a
// neighbour (another tenant's account, which the policy refuses before the body matters)
// gets the last other customer's current account of any tenant, so the body stays valid.
func payee(from string) string {
	var payer demo.Account
	for _, a := range demo.Accounts() {
		if a.ID.String() == from {
			payer = a
		}
	}
	var same, any string
	for _, a := range demo.Accounts() {
		if a.Owner == payer.Owner || a.Name != "current" {
			continue
		}
		any = a.ID.String()
		if a.Tenant == payer.Tenant {
			same = a.ID.String()
		}
	}
	if same != "" {
		return same
	}
	return any
}
