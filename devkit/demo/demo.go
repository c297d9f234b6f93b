// Package demo defines the demo users and accounts that the local stack seeds and the
// development OIDC provider logs in, per tenant of the topology. Both sides derive user IDs from the same function, so a
// token issued for alice@bank-a names the same user the databases hold.
package demo

import (
	"slices"

	"github.com/google/uuid"

	"github.com/ztbank/ztbank/libs/topology"
)

// Roles a demo user can hold.
const (
	RoleCustomer = "customer"
	RoleStaff    = "staff"
)

// User is one seeded person.
type User struct {
	Username    string    // login name, "<name>@<tenant>"
	Tenant      string    // tenant name from the topology, e.g. "bank-a"
	Role        string    // RoleCustomer or RoleStaff
	ID          uuid.UUID // UserID(Username)
	DisplayName string
}

// Account is one seeded account with its opening balance in minor units.
type Account struct {
	ID       uuid.UUID // AccountID(Owner, Name)
	Owner    string    // owning user's username
	Tenant   string
	Name     string // short label, unique per owner, e.g. "current"
	Currency string // ISO 4217 code
	Opening  int64  // opening balance in minor units of Currency
}

// UserID derives a user's ID as the name-based UUID (version 5, URL namespace) of
// "ztbank:" + username. Being deterministic, it needs no shared state between the seed step
// and the OIDC provider, and reseeding a fresh database yields the same IDs.
func UserID(username string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("ztbank:"+username))
}

// AccountID derives an account's ID the same way as UserID, from "ztbank:account:" + owner +
// "/" + name, so tests and the demo can name an account without querying for it.
func AccountID(owner, name string) uuid.UUID {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("ztbank:account:"+owner+"/"+name))
}

// referenceCast is the hand-picked cast of the two reference tenants, which the docs, the
// demo and the tests have named since the start. It is demo data, not configuration: it
// applies only while the topology has a tenant of that name.
var referenceCast = map[string]struct {
	users    []User
	accounts []Account
}{
	"bank-a": {
		users: []User{
			newUser("alice@bank-a", "bank-a", RoleCustomer, "Alice Anders"),
			newUser("carol@bank-a", "bank-a", RoleStaff, "Carol Chen"),
		},
		accounts: []Account{
			newAccount("alice@bank-a", "bank-a", "current", "EUR", 250_000),
			newAccount("alice@bank-a", "bank-a", "savings", "EUR", 1_000_000),
		},
	},
	"bank-b": {
		users: []User{
			newUser("bob@bank-b", "bank-b", RoleCustomer, "Bob Brown"),
			newUser("dave@bank-b", "bank-b", RoleCustomer, "Dave Duarte"),
			newUser("erin@bank-b", "bank-b", RoleStaff, "Erin Evans"),
		},
		accounts: []Account{
			newAccount("bob@bank-b", "bank-b", "current", "EUR", 150_000),
			newAccount("bob@bank-b", "bank-b", "savings", "EUR", 500_000),
			newAccount("dave@bank-b", "bank-b", "current", "EUR", 75_000),
		},
	},
}

// standardCast is what every other tenant of the topology gets, so adding a tenant (make
// tenant) needs no edit here: two customers with accounts (an owner and a neighbour, the
// two relations the isolation suite needs inside a tenant) and one member of staff. Display
// names carry the tenant, so no two tenants share one: the suite looks for other tenants'
// names in every response body.
func standardCast(tenant string) ([]User, []Account) {
	alice, bob, carol := "alice@"+tenant, "bob@"+tenant, "carol@"+tenant
	return []User{
			newUser(alice, tenant, RoleCustomer, "Alice of "+tenant),
			newUser(bob, tenant, RoleCustomer, "Bob of "+tenant),
			newUser(carol, tenant, RoleStaff, "Carol of "+tenant),
		}, []Account{
			newAccount(alice, tenant, "current", "EUR", 200_000),
			newAccount(alice, tenant, "savings", "EUR", 800_000),
			newAccount(bob, tenant, "current", "EUR", 100_000),
		}
}

// users and accounts are derived once from the embedded topology: per tenant, in topology
// order, its reference cast or the standard one.
var users, accounts = castOf(topology.Default())

func castOf(topo *topology.Topology) ([]User, []Account) {
	var us []User
	var as []Account
	for _, t := range topo.Tenants {
		if c, ok := referenceCast[t.Name]; ok {
			us, as = append(us, c.users...), append(as, c.accounts...)
			continue
		}
		u, a := standardCast(t.Name)
		us, as = append(us, u...), append(as, a...)
	}
	return us, as
}

func newUser(username, tenant, role, display string) User {
	return User{Username: username, Tenant: tenant, Role: role, ID: UserID(username), DisplayName: display}
}

func newAccount(owner, tenant, name, currency string, opening int64) Account {
	return Account{ID: AccountID(owner, name), Owner: owner, Tenant: tenant, Name: name, Currency: currency, Opening: opening}
}

// Users returns the demo users in a fixed order. The slice is a copy; callers may modify it.
func Users() []User { return slices.Clone(users) }

// Accounts returns the demo accounts in a fixed order. The slice is a copy.
func Accounts() []Account { return slices.Clone(accounts) }

// UserByName returns the demo user with the given username.
func UserByName(username string) (User, bool) {
	i := slices.IndexFunc(users, func(u User) bool { return u.Username == username })
	if i < 0 {
		return User{}, false
	}
	return users[i], true
}
