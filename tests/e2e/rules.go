package e2e

import (
	"net/http"
	"slices"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/topology"
)

// Layer names the enforcement point that refused a request; LayerNone means it was allowed.
type Layer string

// The layers, outermost first. Each is recognised by the mark its own code writes, never
// by the status code (see layerMarks and classify).
const (
	LayerNone     Layer = ""
	LayerEdge     Layer = "edge"     // the edge refused: no/invalid token, wrong tenant, identity header
	LayerMTLS     Layer = "mtls"     // the service refused the TLS handshake (peer not allowlisted)
	LayerPeer     Layer = "peer"     // the service's application-level allowlist refused the workload (mesh mode)
	LayerJWT      Layer = "jwt"      // the service refused the internal JWT
	LayerPolicy   Layer = "policy"   // the embedded policy denied, with a decision_id
	LayerNotFound Layer = "database" // the tenant's database holds no such resource
	LayerRule     Layer = "rule"     // a business rule refused (e.g. owner not a customer of the tenant)
	LayerNoRoute  Layer = "no-route" // nothing is served at the path
)

// layerMarks maps each layer that answers with problem+json to the problem type only that
// layer's code writes (libs/problem's refusal marks). The handshake layer has no body: its
// mark is the TLS alert the server sent, plus the server's own refusal counter.
var layerMarks = map[Layer]string{
	LayerEdge:     problem.TypeEdge,
	LayerPeer:     problem.TypePeer,
	LayerJWT:      problem.TypeInternalToken,
	LayerPolicy:   problem.TypePolicy,
	LayerNotFound: problem.TypeNotFound,
	LayerRule:     problem.TypeBusinessRule,
	LayerNoRoute:  problem.TypeNoRoute,
}

// layerOfMark is layerMarks inverted.
func layerOfMark(typ string) (Layer, bool) {
	for l, m := range layerMarks {
		if m == typ {
			return l, true
		}
	}
	return "", false
}

// workloadCalls is the suite's own statement of which workload may open a connection to
// which: written by hand from DESIGN.md §1 (edge → gateways → backends; the ingress in front
// of the edge and the gateways), not read from topology.yaml. The allowlists every service
// enforces are generated from topology.yaml, so an expectation read from the same file would
// agree with a wrong edge; TestWorkloadCallsMatchTopology compares the two both ways.
var workloadCalls = map[string][]string{
	"emissary-ingress": {"edge", "bank-a/gateway", "bank-b/gateway"},
	"edge":             {"bank-a/gateway", "bank-b/gateway"},
	"bank-a/gateway":   {"bank-a/user", "bank-a/account"},
	"bank-a/user":      {"bank-a/account"},
	"bank-a/account":   nil,
	"bank-b/gateway":   {"bank-b/payment", "bank-b/ledger"},
	"bank-b/payment":   {"bank-b/ledger"},
	"bank-b/ledger":    nil,
}

// mayCall reports whether the hand-written table lets from open a connection to to.
func mayCall(calls map[string][]string, from, to string) bool {
	return slices.Contains(calls[from], to)
}

// IdentityKind says how a case authenticates.
type IdentityKind string

// Identity kinds.
const (
	Anonymous IdentityKind = "anonymous" // through the edge with no token
	EndUser   IdentityKind = "user"      // through the edge with the user's OIDC access token
	Workload  IdentityKind = "workload"  // directly to a service with the workload's SVID
)

// Identity is who a case acts as.
type Identity struct {
	Kind     IdentityKind
	User     demo.User         // EndUser only
	Workload topology.Workload // Workload only
}

// Name is how the matrix names the identity.
func (id Identity) Name() string {
	switch id.Kind {
	case EndUser:
		return id.User.Username + " (" + id.User.Role + ")"
	case Workload:
		return "svid:" + id.Workload.Name
	}
	return "anonymous"
}

// Relation is how a target resource relates to the identity acting on it.
type Relation string

// Relations the generator covers for every route with a resource.
const (
	NoTarget        Relation = "-"
	Own             Relation = "own"
	SameTenantOther Relation = "same-tenant other"
	OtherTenant     Relation = "other tenant"
)

// Target is the resource a case names in its path or body.
type Target struct {
	Relation Relation
	Kind     ResourceKind
	ID       string // the resource's ID ("" for NoTarget)
	Owner    string // owning username (for a user resource: the user)
	Tenant   string
	Nonce    string // per-run unique suffix for routes that create something
}

// Expectation is what the rules say must happen.
type Expectation struct {
	Status int
	Layer  Layer
}

// Allowed reports whether the expectation is a success.
func (e Expectation) Allowed() bool { return e.Layer == LayerNone }

// roleGrants is the suite's own statement of what each role may do. It is written from the
// design (DESIGN.md §6: customers act on their own resources, staff read within their
// tenant and never move money), not copied from the policy data, so that the suite stays an
// independent oracle: a change to policy/data.json that widens a role makes cases fail.
var roleGrants = map[string][]string{
	demo.RoleCustomer: {"users:read", "accounts:read", "payments:create", "payments:read", "ledger:read", "whoami"},
	demo.RoleStaff:    {"users:read", "accounts:read", "accounts:open", "payments:read", "ledger:read", "whoami"},
}

// tenantScoped roles may act on any resource of their own tenant; the others only on their own.
var tenantScoped = map[string]bool{demo.RoleStaff: true}

// Expect is the oracle: the outcome the rules prescribe for identity acting on route and
// target through the front door (users, anonymous) or directly (workloads, on route.Service).
func Expect(topo *topology.Topology, id Identity, route Route, target Target) Expectation {
	success := http.StatusOK
	if route.Method == http.MethodPost {
		success = http.StatusCreated
	}
	if route.Internal && id.Kind != Workload {
		return Expectation{http.StatusNotFound, LayerEdge}
	}
	switch id.Kind {
	case Anonymous:
		return Expectation{http.StatusUnauthorized, LayerEdge}
	case Workload:
		if !mayCall(workloadCalls, id.Workload.Name, route.Service) {
			return Expectation{0, LayerMTLS}
		}
		if route.WorkloadOnly {
			return Expectation{success, LayerNone}
		}
		return Expectation{http.StatusUnauthorized, LayerJWT}
	}
	u := id.User
	if u.Tenant != route.Tenant {
		return Expectation{http.StatusForbidden, LayerEdge}
	}
	if !slices.Contains(roleGrants[u.Role], route.Permission) {
		return Expectation{http.StatusForbidden, LayerPolicy}
	}
	if target.Relation == NoTarget {
		return Expectation{success, LayerNone}
	}
	// Services decide before they reveal whether an ID exists: an ID this tenant does not
	// hold (another tenant's: each tenant has its own database) is decided as a resource
	// nobody owns, so a customer gets the same 403 as for a neighbour's resource.
	mayRead := target.Owner == u.Username || tenantScoped[u.Role]
	if target.Tenant != route.Tenant {
		mayRead = tenantScoped[u.Role]
	}
	if !mayRead {
		return Expectation{http.StatusForbidden, LayerPolicy}
	}
	if target.Tenant != route.Tenant {
		switch {
		case route.UnknownIsEmpty:
			return Expectation{success, LayerNone}
		case route.ForCustomers:
			return Expectation{http.StatusUnprocessableEntity, LayerRule}
		}
		return Expectation{http.StatusNotFound, LayerNotFound}
	}
	if owner, _ := demo.UserByName(target.Owner); route.ForCustomers && owner.Role != demo.RoleCustomer {
		return Expectation{http.StatusUnprocessableEntity, LayerRule}
	}
	return Expectation{success, LayerNone}
}

// Visible reports whether id may see a resource owned by owner in tenant. The suite fails a
// case whose response body names anything id may not see.
func Visible(id Identity, owner, tenant string) bool {
	if id.Kind != EndUser {
		return false
	}
	if id.User.Tenant != tenant {
		return false
	}
	return owner == id.User.Username || tenantScoped[id.User.Role]
}

// Foreign lists the strings (user IDs, usernames, display names, account IDs) of every demo
// resource id may not see.
func Foreign(id Identity) []string {
	var out []string
	for _, u := range demo.Users() {
		if !Visible(id, u.Username, u.Tenant) {
			out = append(out, u.ID.String(), u.Username, u.DisplayName)
		}
	}
	for _, a := range demo.Accounts() {
		if !Visible(id, a.Owner, a.Tenant) {
			out = append(out, a.ID.String())
		}
	}
	return out
}
