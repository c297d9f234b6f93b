// Package enrol maps a verified external identity to the platform user it speaks for: the
// tenant the user is enrolled in, their SPIFFE ID spiffe://<tenant>/user/<id>, and their
// roles. A user the mapping does not know is refused, even with a perfectly valid token: an
// account at the identity provider is not an account at the bank.
package enrol

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/demo"
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

// Mapper turns the claims of a verified external token into a platform user.
type Mapper interface {
	Map(claims map[string]any) (User, error)
}

// Entry is one row of an enrolment table.
type Entry struct {
	// Key is the value of the table's key claim, e.g. the user's address for the email claim.
	Key    string   `json:"key"`
	Tenant string   `json:"tenant"`
	UserID string   `json:"user_id"`
	Roles  []string `json:"roles"`
}

// Table is an enrolment table keyed by one claim of the external token. The table, not the
// token, decides tenant, ID and roles; a token that claims a different tenant is refused.
type Table struct {
	keyClaim    string
	tenantClaim string
	users       map[string]User
}

// NewTable validates entries against the known tenants and the SPIFFE path rules.
func NewTable(keyClaim string, tenants []string, entries []Entry) (*Table, error) {
	if keyClaim == "" {
		return nil, errors.New("enrol: key claim is required")
	}
	t := &Table{keyClaim: keyClaim, tenantClaim: "tenant", users: make(map[string]User, len(entries))}
	for i, e := range entries {
		if e.Key == "" {
			return nil, fmt.Errorf("enrol: entry %d: empty key", i)
		}
		if !slices.Contains(tenants, e.Tenant) {
			return nil, fmt.Errorf("enrol: entry %q: unknown tenant %q", e.Key, e.Tenant)
		}
		id, err := usertoken.UserID(e.Tenant, e.UserID)
		if err != nil {
			return nil, fmt.Errorf("enrol: entry %q: %w", e.Key, err)
		}
		if _, dup := t.users[e.Key]; dup {
			return nil, fmt.Errorf("enrol: entry %q appears twice", e.Key)
		}
		t.users[e.Key] = User{ID: id, Tenant: e.Tenant, Roles: slices.Clone(e.Roles)}
	}
	return t, nil
}

// LoadTable reads a JSON array of entries from path.
func LoadTable(path, keyClaim string, tenants []string) (*Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	var entries []Entry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("enrol: %s: %w", path, err)
	}
	return NewTable(keyClaim, tenants, entries)
}

// DemoTable enrols the seeded demo users by email, with the same IDs the databases hold.
func DemoTable(tenants []string) (*Table, error) {
	var entries []Entry
	for _, u := range demo.Users() {
		entries = append(entries, Entry{Key: u.Username, Tenant: u.Tenant, UserID: u.ID.String(), Roles: []string{u.Role}})
	}
	return NewTable("email", tenants, entries)
}

// Map looks the user up by the key claim.
func (t *Table) Map(claims map[string]any) (User, error) {
	key, _ := claims[t.keyClaim].(string)
	u, ok := t.users[key]
	if !ok {
		return User{}, fmt.Errorf("%s %q: %w", t.keyClaim, key, ErrNotEnrolled)
	}
	if tn, present := claims[t.tenantClaim]; present && tn != u.Tenant {
		return User{}, fmt.Errorf("%s %q claims tenant %v but is enrolled in %q: %w", t.keyClaim, key, tn, u.Tenant, ErrNotEnrolled)
	}
	u.Roles = slices.Clone(u.Roles)
	return u, nil
}

// Claims maps users straight from token claims, for providers that already carry the tenant
// and a stable user ID. Only known tenants are accepted and the ID must be one SPIFFE path
// segment, so a claim cannot name another trust domain or path.
type Claims struct {
	TenantClaim string // default "tenant"
	UserClaim   string // default "sub"
	RolesClaim  string // default "roles"
	Tenants     []string
}

// Map reads tenant, user ID and roles from claims.
func (c Claims) Map(claims map[string]any) (User, error) {
	tenantClaim, userClaim, rolesClaim := or(c.TenantClaim, "tenant"), or(c.UserClaim, "sub"), or(c.RolesClaim, "roles")
	tenant, _ := claims[tenantClaim].(string)
	if !slices.Contains(c.Tenants, tenant) {
		return User{}, fmt.Errorf("tenant %q: %w", tenant, ErrNotEnrolled)
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
