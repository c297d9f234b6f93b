package e2e

import (
	"net/http"
	"slices"

	"github.com/ztbank/ztbank/devkit/demo"
)

// ServiceRoute is one route a service serves, as its routes.go declares it, with what the
// rules need to predict who gets through when a workload calls it directly over mTLS. The
// table is checked against the router every running service publishes (chi.Walk, see
// libs/server.RouteTable): a served route without a row, or a row nothing serves, fails the
// suite.
type ServiceRoute struct {
	Workload string // topology name of the serving workload
	Method   string
	Pattern  string // chi route pattern
	// From lists the workloads the route's Require admits (authz.From); empty: every
	// workload the service's allowlist admits.
	From []string
	// WorkloadOnly routes answer a workload that sends no user token.
	WorkloadOnly bool
	// AnyMember: the listener admits every workload of the trust domain (the edge's JWKS),
	// not an allowlist.
	AnyMember bool
	// Calls are the user-token calls each admitted workload makes on the route; empty for
	// workload-only routes.
	Calls []UserCall
	// Sample fills the path parameter of a workload-only route that has no user calls (a
	// posting reference), so the request reaches the route instead of the router's 404.
	Sample string
	// Admitted is what an admitted workload gets without a user token when that is not 200:
	// an unposted reference is the ledger's 404 from its database, which is only reached
	// once mTLS and the policy let the call through.
	Admitted *Expectation
}

// Name is "workload METHOD pattern".
func (r ServiceRoute) Name() string { return r.Workload + " " + r.Method + " " + r.Pattern }

// UserCall is one call on a route with a genuine internal JWT of a demo user, as the calling
// workload would forward it.
type UserCall struct {
	User     string // demo username whose internal token is sent
	Relation Relation
	Kind     ResourceKind
	// Body builds the request body for the target; nil for none.
	Body func(t Target) string
	// Want is the outcome when the route admits the calling workload.
	Want Expectation
}

var (
	ok200     = Expectation{http.StatusOK, LayerNone}
	created   = Expectation{http.StatusCreated, LayerNone}
	denied    = Expectation{http.StatusForbidden, LayerPolicy}
	ruleError = Expectation{http.StatusUnprocessableEntity, LayerRule}
	notFound  = Expectation{http.StatusNotFound, LayerNotFound}
	// unposted is a reference no posting carries: the ledger answers it from its database.
	unposted = "00000000-0000-4000-8000-00000000e2e0"
	front    = []string{"edge", "emissary-ingress"}
)

func openAccountBody(currency string) func(Target) string {
	return func(t Target) string {
		return `{"owner_id":"` + t.ID + `","name":"e2e-direct-` + t.Nonce + `","currency":"` + currency + `"}`
	}
}

func paymentBody(t Target) string {
	return `{"from_account":"` + t.ID + `","to_account":"` + payee(t.ID) + `","amount":{"amount":1,"currency":"EUR"},"reference":"e2e-direct-` + t.Nonce + `"}`
}

// postingBody debits the target account one minor unit and credits the payee: what the
// payment service posts for a payment.
func postingBody(t Target) string {
	return `{"reference":"e2e-posting-` + t.Nonce + `","description":"e2e","currency":"EUR","entries":[` +
		`{"account_id":"` + t.ID + `","amount":-1},{"account_id":"` + payee(t.ID) + `","amount":1}]}`
}

// bankACalls and bankBCalls are the banking calls of each tenant's public API, made on the
// gateway and again on the backend that serves them: a customer on their own resource and on a
// neighbour's, and staff opening an account for themselves (a business rule refuses it, which
// proves the call got past every other layer without creating data on every run).
var (
	usersMe        = []UserCall{{User: "alice@bank-a", Relation: NoTarget, Want: ok200}}
	userByID       = []UserCall{{User: "alice@bank-a", Relation: Own, Kind: UserResource, Want: ok200}, {User: "alice@bank-a", Relation: SameTenantOther, Kind: UserResource, Want: denied}}
	accountsOfUser = []UserCall{{User: "alice@bank-a", Relation: Own, Kind: UserResource, Want: ok200}, {User: "alice@bank-a", Relation: SameTenantOther, Kind: UserResource, Want: denied}}
	accountByID    = []UserCall{{User: "alice@bank-a", Relation: Own, Kind: AccountResource, Want: ok200}}
	openAccount    = []UserCall{{User: "carol@bank-a", Relation: Own, Kind: UserResource, Body: openAccountBody("EUR"), Want: ruleError},
		{User: "alice@bank-a", Relation: Own, Kind: UserResource, Body: openAccountBody("EUR"), Want: denied}}

	ledgerList    = []UserCall{{User: "bob@bank-b", Relation: NoTarget, Want: ok200}}
	ledgerBalance = []UserCall{{User: "bob@bank-b", Relation: Own, Kind: AccountResource, Want: ok200}, {User: "bob@bank-b", Relation: SameTenantOther, Kind: AccountResource, Want: denied}}
	ledgerEntries = []UserCall{{User: "bob@bank-b", Relation: Own, Kind: AccountResource, Want: ok200}, {User: "bob@bank-b", Relation: SameTenantOther, Kind: AccountResource, Want: denied}}
	makePayment   = []UserCall{{User: "bob@bank-b", Relation: Own, Kind: AccountResource, Body: paymentBody, Want: created},
		{User: "bob@bank-b", Relation: SameTenantOther, Kind: AccountResource, Body: paymentBody, Want: denied}}
	readPayment = []UserCall{{User: "bob@bank-b", Relation: Own, Kind: PaymentResource, Want: ok200}, {User: "bob@bank-b", Relation: SameTenantOther, Kind: PaymentResource, Want: denied}}
)

func diagnostics(workload string) []ServiceRoute {
	return []ServiceRoute{
		{Workload: workload, Method: "GET", Pattern: "/internal/whoami", WorkloadOnly: true},
		{Workload: workload, Method: "GET", Pattern: "/internal/chain", WorkloadOnly: true},
	}
}

// ServiceRoutes is every route every tenant service serves, and the edge's mTLS listener.
// Adding a route to a service's routes.go without a row here fails TestIsolation's route
// coverage check.
var ServiceRoutes = slices.Concat(
	diagnostics("bank-a/gateway"),
	[]ServiceRoute{
		{Workload: "bank-a/gateway", Method: "GET", Pattern: "/v1/openapi.yaml", WorkloadOnly: true, From: front},
		{Workload: "bank-a/gateway", Method: "GET", Pattern: "/v1/users/me", From: front, Calls: usersMe},
		{Workload: "bank-a/gateway", Method: "GET", Pattern: "/v1/users/{userID}", From: front, Calls: userByID},
		{Workload: "bank-a/gateway", Method: "GET", Pattern: "/v1/users/{userID}/accounts", From: front, Calls: accountsOfUser},
		{Workload: "bank-a/gateway", Method: "GET", Pattern: "/v1/accounts/{accountID}", From: front, Calls: accountByID},
		{Workload: "bank-a/gateway", Method: "POST", Pattern: "/v1/accounts", From: front, Calls: openAccount},
	},
	diagnostics("bank-a/user"),
	[]ServiceRoute{
		{Workload: "bank-a/user", Method: "GET", Pattern: "/v1/users/me", From: []string{"bank-a/gateway"}, Calls: usersMe},
		{Workload: "bank-a/user", Method: "GET", Pattern: "/v1/users/{userID}", From: []string{"bank-a/gateway"}, Calls: userByID},
		{Workload: "bank-a/user", Method: "GET", Pattern: "/v1/users/{userID}/accounts", From: []string{"bank-a/gateway"}, Calls: accountsOfUser},
		{Workload: "bank-a/user", Method: "POST", Pattern: "/v1/accounts", From: []string{"bank-a/gateway"}, Calls: openAccount},
	},
	diagnostics("bank-a/account"),
	[]ServiceRoute{
		{Workload: "bank-a/account", Method: "GET", Pattern: "/v1/accounts/{accountID}", From: []string{"bank-a/gateway"}, Calls: accountByID},
		// Internal: only the user service lists a user's accounts and opens accounts (it
		// checks the owner is a customer first). An unsupported currency is a business
		// rule, reached once mTLS, the token, the route's From and the role all passed.
		{Workload: "bank-a/account", Method: "GET", Pattern: "/v1/users/{userID}/accounts", From: []string{"bank-a/user"}, Calls: accountsOfUser},
		{Workload: "bank-a/account", Method: "POST", Pattern: "/v1/accounts", From: []string{"bank-a/user"}, Calls: []UserCall{
			{User: "carol@bank-a", Relation: SameTenantOther, Kind: UserResource, Body: openAccountBody("XXX"), Want: ruleError},
			{User: "alice@bank-a", Relation: Own, Kind: UserResource, Body: openAccountBody("EUR"), Want: denied}}},
	},
	diagnostics("bank-b/gateway"),
	[]ServiceRoute{
		{Workload: "bank-b/gateway", Method: "GET", Pattern: "/v1/openapi.yaml", WorkloadOnly: true, From: front},
		{Workload: "bank-b/gateway", Method: "GET", Pattern: "/v1/accounts", From: front, Calls: ledgerList},
		{Workload: "bank-b/gateway", Method: "GET", Pattern: "/v1/accounts/{accountID}/balance", From: front, Calls: ledgerBalance},
		{Workload: "bank-b/gateway", Method: "GET", Pattern: "/v1/accounts/{accountID}/entries", From: front, Calls: ledgerEntries},
		{Workload: "bank-b/gateway", Method: "POST", Pattern: "/v1/payments", From: front, Calls: makePayment},
		{Workload: "bank-b/gateway", Method: "GET", Pattern: "/v1/payments/{paymentID}", From: front, Calls: readPayment},
	},
	diagnostics("bank-b/payment"),
	[]ServiceRoute{
		{Workload: "bank-b/payment", Method: "POST", Pattern: "/v1/payments", From: []string{"bank-b/gateway"}, Calls: makePayment},
		{Workload: "bank-b/payment", Method: "GET", Pattern: "/v1/payments/{paymentID}", From: []string{"bank-b/gateway"}, Calls: readPayment},
	},
	diagnostics("bank-b/ledger"),
	[]ServiceRoute{
		{Workload: "bank-b/ledger", Method: "GET", Pattern: "/v1/accounts", From: []string{"bank-b/gateway"}, Calls: ledgerList},
		{Workload: "bank-b/ledger", Method: "GET", Pattern: "/v1/accounts/{accountID}/balance", From: []string{"bank-b/gateway"}, Calls: ledgerBalance},
		{Workload: "bank-b/ledger", Method: "GET", Pattern: "/v1/accounts/{accountID}/entries", From: []string{"bank-b/gateway"}, Calls: ledgerEntries},
		// Internal: the payment service reads an account's owner and posts the payment; the
		// posting is checked again per debited account against the user it speaks for.
		{Workload: "bank-b/ledger", Method: "GET", Pattern: "/v1/accounts/{accountID}", From: []string{"bank-b/payment"}, Calls: []UserCall{
			{User: "bob@bank-b", Relation: Own, Kind: AccountResource, Want: ok200}}},
		{Workload: "bank-b/ledger", Method: "POST", Pattern: "/v1/postings", From: []string{"bank-b/payment"}, Calls: []UserCall{
			{User: "bob@bank-b", Relation: Own, Kind: AccountResource, Body: postingBody, Want: created},
			{User: "bob@bank-b", Relation: SameTenantOther, Kind: AccountResource, Body: postingBody, Want: denied}}},
		// Internal, no user: the payment service's recovery asks whether a reference was
		// posted (ADR 0996).
		{Workload: "bank-b/ledger", Method: "GET", Pattern: "/v1/postings/{reference}", From: []string{"bank-b/payment"}, WorkloadOnly: true,
			Sample: unposted, Admitted: &notFound},
	},
	// The edge's mTLS listener serves the internal-token JWKS to any workload of the trust
	// domain (public data; mTLS there authenticates the edge to the client). It is an
	// http.ServeMux, which publishes no route table, so this row is not checked against one.
	[]ServiceRoute{{Workload: "edge", Method: "GET", Pattern: "/.well-known/jwks.json", WorkloadOnly: true, AnyMember: true}},
)

// ExpectDirect is the oracle for a workload calling a service route directly: the
// hand-written workload table decides the handshake, the route's From the policy's
// route-level decision, and the call's own expectation the rest. call is nil when no user
// token is sent.
func ExpectDirect(calls map[string][]string, caller string, r ServiceRoute, call *UserCall) Expectation {
	if !r.AnyMember && !mayCall(calls, caller, r.Workload) {
		return Expectation{0, LayerMTLS}
	}
	admitted := len(r.From) == 0 || slices.Contains(r.From, caller)
	if call == nil {
		if !r.WorkloadOnly {
			return Expectation{http.StatusUnauthorized, LayerJWT}
		}
		if !admitted {
			return denied
		}
		if r.Admitted != nil {
			return *r.Admitted
		}
		return ok200
	}
	if !admitted {
		return denied
	}
	return call.Want
}

// userTarget picks the target of a user call: the user's own resource or a neighbour's.
func userTarget(c UserCall) Target {
	if c.Relation == NoTarget {
		return Target{Relation: NoTarget}
	}
	me, _ := demo.UserByName(c.User)
	t := pick(c.Kind, func(owner demo.User) bool {
		if c.Relation == Own {
			return owner.Username == me.Username
		}
		return owner.Tenant == me.Tenant && owner.Username != me.Username
	})
	t.Relation = c.Relation
	return t
}
