// Package demo defines the demo users and accounts that the local stack seeds and the
// development OIDC provider logs in. Both sides derive user IDs from the same function, so a
// token issued for alice@bank-a names the same user the databases hold.
package demo

import (
	"slices"

	"github.com/google/uuid"
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

var users = []User{
	newUser("alice@bank-a", "bank-a", RoleCustomer, "Alice Anders"),
	newUser("carol@bank-a", "bank-a", RoleStaff, "Carol Chen"),
	newUser("bob@bank-b", "bank-b", RoleCustomer, "Bob Brown"),
	newUser("dave@bank-b", "bank-b", RoleCustomer, "Dave Duarte"),
	newUser("erin@bank-b", "bank-b", RoleStaff, "Erin Evans"),
}

var accounts = []Account{
	newAccount("alice@bank-a", "bank-a", "current", "EUR", 250_000),
	newAccount("alice@bank-a", "bank-a", "savings", "EUR", 1_000_000),
	newAccount("bob@bank-b", "bank-b", "current", "EUR", 150_000),
	newAccount("bob@bank-b", "bank-b", "savings", "EUR", 500_000),
	newAccount("dave@bank-b", "bank-b", "current", "EUR", 75_000),
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
