package authz

import (
	"sort"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// The user roles the policy's permission table knows. Handlers that apply a business rule
// to a role (accounts are opened for customers only) name it from here, the policy's side,
// not from any table of demo users.
const (
	RoleCustomer = "customer"
	RoleStaff    = "staff"
)

// Input is everything the policy may consider for one decision. Require and Check fill it
// from the request; tests and tools build it directly.
type Input struct {
	// Caller is the SPIFFE ID of the workload that opened the connection.
	Caller spiffeid.ID
	// User is the end user's SPIFFE ID (spiffe://<tenant>/user/<id>); zero for none.
	User spiffeid.ID
	// Tenant is the tenant claim of the user's internal token.
	Tenant string
	// Roles are the user's roles ("customer", "staff").
	Roles []string
	// Action is the permission asked for, e.g. "accounts:read".
	Action string
	// Method is the HTTP method.
	Method string
	// Route is the route pattern (e.g. "/v1/accounts/{accountID}"), never the raw path, so
	// that decisions and audit lines group by route and carry no identifiers in the path.
	Route string
	// Params are the route's path parameters.
	Params map[string]string
	// From narrows the workloads (topology names) that may call this route; empty means any
	// workload the topology lets call the service.
	From []string
	// WorkloadOnly marks a route that takes no end user.
	WorkloadOnly bool
	// Resource is the resource a handler loaded, if any.
	Resource *Resource
}

// Resource is what a handler loaded before deciding: who owns it and which tenant it
// belongs to. Kind and ID are for the audit line only; the policy does not read them.
type Resource struct {
	Kind   string
	ID     string
	Owner  spiffeid.ID
	Tenant string
}

// Pre-built key terms: input conversion runs on every decision, and these never change.
var (
	keyCaller       = ast.StringTerm("caller")
	keyUser         = ast.StringTerm("user")
	keyID           = ast.StringTerm("id")
	keyTenant       = ast.StringTerm("tenant")
	keyRoles        = ast.StringTerm("roles")
	keyAction       = ast.StringTerm("action")
	keyRoute        = ast.StringTerm("route")
	keyMethod       = ast.StringTerm("method")
	keyPattern      = ast.StringTerm("pattern")
	keyParams       = ast.StringTerm("params")
	keyFrom         = ast.StringTerm("from")
	keyWorkloadOnly = ast.StringTerm("workload_only")
	keyResource     = ast.StringTerm("resource")
	keyOwner        = ast.StringTerm("owner")
	keyKind         = ast.StringTerm("kind")
)

// value converts the input to the policy's input document directly as an ast.Value. It
// avoids the JSON round trip and reflection that rego.EvalInput would cost on every request.
//
// The document has this shape; members without a value are omitted so that the policy sees
// them as undefined, never as an empty string that could compare equal to another:
//
//	{"caller": "spiffe://...", "action": "...",
//	 "user": {"id": "spiffe://<tenant>/user/<id>", "tenant": "...", "roles": [...]},
//	 "route": {"method": "...", "pattern": "...", "params": {...}, "from": [...], "workload_only": false},
//	 "resource": {"kind": "...", "id": "...", "owner": "...", "tenant": "..."}}
func (in *Input) value(terms termCache) ast.Value {
	str := terms.term
	top := ast.NewObjectWithCapacity(5)
	if !in.Caller.IsZero() {
		top.Insert(keyCaller, str(in.Caller.String()))
	}
	top.Insert(keyAction, str(in.Action))
	if !in.User.IsZero() {
		roles := make([]*ast.Term, len(in.Roles))
		for i, r := range in.Roles {
			roles[i] = str(r)
		}
		top.Insert(keyUser, ast.ObjectTerm(
			ast.Item(keyID, ast.StringTerm(in.User.String())),
			ast.Item(keyTenant, str(in.Tenant)),
			ast.Item(keyRoles, ast.ArrayTerm(roles...)),
		))
	}

	params := ast.NewObjectWithCapacity(len(in.Params))
	for k, v := range in.Params {
		params.Insert(str(k), ast.StringTerm(v))
	}
	from := make([]*ast.Term, len(in.From))
	for i, w := range in.From {
		from[i] = str(w)
	}
	top.Insert(keyRoute, ast.ObjectTerm(
		ast.Item(keyMethod, str(in.Method)),
		ast.Item(keyPattern, str(in.Route)),
		ast.Item(keyParams, ast.NewTerm(params)),
		ast.Item(keyFrom, ast.ArrayTerm(from...)),
		ast.Item(keyWorkloadOnly, ast.BooleanTerm(in.WorkloadOnly)),
	))

	if res := in.Resource; res != nil {
		o := ast.NewObjectWithCapacity(4)
		o.Insert(keyTenant, str(res.Tenant))
		if !res.Owner.IsZero() {
			o.Insert(keyOwner, ast.StringTerm(res.Owner.String()))
		}
		if res.Kind != "" {
			o.Insert(keyKind, ast.StringTerm(res.Kind))
		}
		if res.ID != "" {
			o.Insert(keyID, ast.StringTerm(res.ID))
		}
		top.Insert(keyResource, ast.NewTerm(o))
	}
	return top
}

// termCache holds ready-made terms for the strings most inputs repeat: workload IDs, tenant
// names, permission and role names, HTTP methods and the workloads routes name. It is built
// by New and read-only afterwards, so it needs no lock; terms are immutable once built.
type termCache map[string]*ast.Term

// term returns the cached term for s, or a new one.
func (c termCache) term(s string) *ast.Term {
	if t, ok := c[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

// add caches a term for each of ss.
func (c termCache) add(ss ...string) {
	for _, s := range ss {
		if _, ok := c[s]; !ok {
			c[s] = ast.StringTerm(s)
		}
	}
}

// sortedKeys returns m's keys in order, for stable audit output.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
