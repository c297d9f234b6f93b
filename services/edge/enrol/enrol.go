// Package enrol maps a verified external identity to the platform user it speaks for: the
// tenant the user is enrolled in, their SPIFFE ID spiffe://<tenant>/user/<id>, and their
// roles. A user the mapping does not know is refused, even with a perfectly valid token: an
// account at the identity provider is not an account at the bank.
//
// An identity is the pair (issuer, claim): each bank runs its own identity provider, so the
// same e-mail address at two banks' providers names two different people. A mapper therefore
// only ever considers the tenants that trust the issuer that verified the token; a token from
// tenant X's provider cannot map to a user of tenant Y, whatever its claims say.
package enrol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/ztbank/ztbank/libs/usertoken"
)

// ErrNotEnrolled means the external identity maps to no user of any known tenant.
var ErrNotEnrolled = errors.New("user not enrolled")

// User is a platform user.
type User struct {
	ID     spiffeid.ID
	Tenant string
	Roles  []string
}

// Mapper turns the claims of a verified external token into a platform user. issuer is the
// issuer whose keys verified the token.
type Mapper interface {
	Map(issuer string, claims map[string]any) (User, error)
}

// Issuers lists, per tenant, the issuers trusted to vouch for that tenant's users (the edge's
// EDGE_ISSUERS).
type Issuers map[string][]string

// tenantsOf lists the tenants that trust issuer, in a stable order.
func (is Issuers) tenantsOf(issuer string) []string {
	var out []string
	for tenant, list := range is {
		if slices.Contains(list, issuer) {
			out = append(out, tenant)
		}
	}
	slices.Sort(out)
	return out
}

// Entry is one row of an enrolment table.
type Entry struct {
	// Key is the value of the table's key claim, e.g. the user's address for the email claim.
	Key    string   `json:"key"`
	Tenant string   `json:"tenant"`
	UserID string   `json:"user_id"`
	Roles  []string `json:"roles"`
}

// Table is an enrolment table keyed by tenant and one claim of the external token: a row
// (tenant, key) is reached only by a token whose issuer that tenant trusts. The table, not
// the token, decides tenant, ID and roles; a token that claims a different tenant is refused.
type Table struct {
	keyClaim    string
	tenantClaim string
	issuers     Issuers
	users       map[string]map[string]User // tenant -> key -> user
}

// NewTable validates entries against the tenants of issuers and the SPIFFE path rules. The
// same key may appear once per tenant: two banks' providers may each have a user with the
// same address.
func NewTable(keyClaim string, issuers Issuers, entries []Entry) (*Table, error) {
	if keyClaim == "" {
		return nil, errors.New("enrol: key claim is required")
	}
	t := &Table{keyClaim: keyClaim, tenantClaim: "tenant", issuers: issuers, users: make(map[string]map[string]User)}
	for i, e := range entries {
		if e.Key == "" {
			return nil, fmt.Errorf("enrol: entry %d: empty key", i)
		}
		if len(issuers[e.Tenant]) == 0 {
			return nil, fmt.Errorf("enrol: entry %q: tenant %q has no trusted issuer", e.Key, e.Tenant)
		}
		id, err := usertoken.UserID(e.Tenant, e.UserID)
		if err != nil {
			return nil, fmt.Errorf("enrol: entry %q: %w", e.Key, err)
		}
		if t.users[e.Tenant] == nil {
			t.users[e.Tenant] = map[string]User{}
		}
		if _, dup := t.users[e.Tenant][e.Key]; dup {
			return nil, fmt.Errorf("enrol: entry %q appears twice in tenant %q", e.Key, e.Tenant)
		}
		t.users[e.Tenant][e.Key] = User{ID: id, Tenant: e.Tenant, Roles: slices.Clone(e.Roles)}
	}
	return t, nil
}

// LoadTable reads a JSON array of entries from path.
func LoadTable(path, keyClaim string, issuers Issuers) (*Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	t, err := ParseTable(b, keyClaim, issuers)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return t, nil
}

// ParseTable reads a JSON array of entries; unknown fields are refused, so a misspelt column
// cannot silently drop a user's roles.
func ParseTable(b []byte, keyClaim string, issuers Issuers) (*Table, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var entries []Entry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("enrol: table: %w", err)
	}
	return NewTable(keyClaim, issuers, entries)
}

// Map looks the user up by the key claim among the tenants that trust issuer. Where one
// provider serves several tenants (the local stack) a key enrolled in more than one of them
// is ambiguous and refused rather than guessed.
func (t *Table) Map(issuer string, claims map[string]any) (User, error) {
	key, _ := claims[t.keyClaim].(string)
	var (
		u     User
		found []string
	)
	for _, tenant := range t.issuers.tenantsOf(issuer) {
		if v, ok := t.users[tenant][key]; ok {
			u, found = v, append(found, tenant)
		}
	}
	switch len(found) {
	case 0:
		return User{}, fmt.Errorf("%s %q from %s: %w", t.keyClaim, key, issuer, ErrNotEnrolled)
	case 1:
	default:
		return User{}, fmt.Errorf("%s %q from %s is enrolled in %v: ambiguous: %w", t.keyClaim, key, issuer, found, ErrNotEnrolled)
	}
	if tn, present := claims[t.tenantClaim]; present && tn != u.Tenant {
		return User{}, fmt.Errorf("%s %q claims tenant %v but is enrolled in %q: %w", t.keyClaim, key, tn, u.Tenant, ErrNotEnrolled)
	}
	u.Roles = slices.Clone(u.Roles)
	return u, nil
}

// Claims maps users straight from token claims, for providers that already carry the tenant
// and a stable user ID. Only a tenant that trusts the token's issuer is accepted, and the ID
// must be one SPIFFE path segment, so a claim cannot name another tenant, trust domain or path.
type Claims struct {
	TenantClaim string // default "tenant"
	UserClaim   string // default "sub"
	RolesClaim  string // default "roles"
	Issuers     Issuers
}

// Map reads tenant, user ID and roles from claims.
func (c Claims) Map(issuer string, claims map[string]any) (User, error) {
	tenantClaim, userClaim, rolesClaim := or(c.TenantClaim, "tenant"), or(c.UserClaim, "sub"), or(c.RolesClaim, "roles")
	tenant, _ := claims[tenantClaim].(string)
	if !slices.Contains(c.Issuers[tenant], issuer) {
		return User{}, fmt.Errorf("tenant %q from %s: not a tenant of that issuer: %w", tenant, issuer, ErrNotEnrolled)
	}
	uid, _ := claims[userClaim].(string)
	id, err := usertoken.UserID(tenant, uid)
	if err != nil {
		return User{}, fmt.Errorf("%s: %v: %w", userClaim, err, ErrNotEnrolled)
	}
	return User{ID: id, Tenant: tenant, Roles: Roles(claims[rolesClaim])}, nil
}

// Roles reads a roles claim given as a JSON array of strings or a space-separated string
// (the OAuth "scope" convention). Anything else yields no roles.
func Roles(v any) []string {
	switch r := v.(type) {
	case string:
		return strings.Fields(r)
	case []any:
		var out []string
		for _, x := range r {
			if s, ok := x.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
