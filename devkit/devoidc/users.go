package devoidc

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/ztbank/ztbank/devkit/atomicfile"
	"github.com/ztbank/ztbank/devkit/demo"
)

// Roles a demo user can hold. The edge copies them into the internal token and the policies
// decide on them; the provider only asserts them.
const (
	RoleCustomer = demo.RoleCustomer
	RoleStaff    = demo.RoleStaff
)

// User is a person who can log in to the development provider.
type User struct {
	// Username is the login name, "<name>@<tenant>" (for example "alice@bank-a").
	Username string
	// Name is the display name given in the "name" claim of the profile scope.
	Name string
	// Roles are the roles asserted in the access token's "roles" claim.
	Roles []string
}

// Tenant returns the tenant the user belongs to: the part of the username after "@".
func (u User) Tenant() string {
	_, tenant, _ := strings.Cut(u.Username, "@")
	return tenant
}

// ID returns the user's stable subject identifier, a name-based (version 5) UUID of the
// username. The edge turns it into the user's SPIFFE ID, spiffe://<tenant>/user/<id>.
func (u User) ID() string { return UserID(u.Username) }

// Email returns the user's e-mail address, which is the username itself: the edge enrols
// demo users by the email claim (services/edge/enrol), as it would with a hosted provider
// whose users sign in with their address. The tenant names are not resolvable domains, so
// no demo message could reach a real mailbox.
func (u User) Email() string { return u.Username }

// UserID returns the subject identifier the provider issues for username.
func UserID(username string) string {
	// One derivation for the whole platform (devkit/demo), so the seed data, this provider
	// and the edge's enrolment agree on alice's ID without sharing state.
	return demo.UserID(username).String()
}

// DemoUsers returns the seeded users of the local stack (devkit/demo): two tenants, each with
// customers and a member of staff, so that every isolation case (own data, neighbour's data,
// other tenant, staff within and across tenants) has someone to play it. Deriving them from
// devkit/demo keeps the provider and the seed data from drifting apart.
func DemoUsers() []User {
	var users []User
	for _, u := range demo.Users() {
		users = append(users, User{Username: u.Username, Name: u.DisplayName, Roles: []string{u.Role}})
	}
	return users
}

func validateUsers(users []User) error {
	seen := map[string]bool{}
	for _, u := range users {
		name, tenant, ok := strings.Cut(u.Username, "@")
		if !ok || name == "" || tenant == "" || strings.ContainsAny(u.Username, " /") {
			return fmt.Errorf("devoidc: username %q is not of the form name@tenant", u.Username)
		}
		if seen[u.Username] {
			return fmt.Errorf("devoidc: duplicate user %q", u.Username)
		}
		seen[u.Username] = true
		if len(u.Roles) == 0 {
			return fmt.Errorf("devoidc: user %q has no roles", u.Username)
		}
	}
	return nil
}

// credential is a secret generated at start-up. Only its digest is kept for comparison, so
// that the comparison takes the same time whatever the length of the guess.
type credential [sha256.Size]byte

func newCredential(secret string) credential { return sha256.Sum256([]byte(secret)) }

func (c credential) matches(guess string) bool {
	g := sha256.Sum256([]byte(guess))
	return subtle.ConstantTimeCompare(c[:], g[:]) == 1
}

// randomSecret returns 32 random bytes, base64url-encoded: long enough that no one guesses
// it, and safe to pass on a command line or in a form.
func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never returns an error (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ReadSecrets reads a file written by the provider (passwords.json or client-secrets.json):
// a JSON object from a user or client name to its secret. It refuses a file that others can
// read, because such a file would mean the secrets have already leaked on this machine.
func ReadSecrets(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("devoidc: read secrets: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("devoidc: read secrets: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("devoidc: %s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	var secrets map[string]string
	if err := json.NewDecoder(f).Decode(&secrets); err != nil {
		return nil, fmt.Errorf("devoidc: parse %s: %w", path, err)
	}
	return secrets, nil
}

// writeSecrets writes secrets as ReadSecrets reads them, mode 0600, through a rename so a
// reader never sees a half-written file.
func writeSecrets(path string, secrets map[string]string) error {
	data, err := json.MarshalIndent(secrets, "", "  ")
	if err != nil {
		return fmt.Errorf("devoidc: encode secrets: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("devoidc: %w", err)
	}
	return nil
}

// EnrolmentEntry is one row of the edge's enrolment table, in the JSON shape the edge reads
// (services/edge/enrol.Entry; a test in the edge loads this provider's table with it). The
// edge keeps no users of its own: the local stacks point EDGE_ENROLMENT at this table.
type EnrolmentEntry struct {
	Key    string   `json:"key"`
	Tenant string   `json:"tenant"`
	UserID string   `json:"user_id"`
	Roles  []string `json:"roles"`
}

// EnrolmentTable enrols users by their email claim, with the IDs the provider issues as
// sub (the same the seed data holds), as the edge's EDGE_ENROLMENT_CLAIM=email expects.
func EnrolmentTable(users []User) ([]byte, error) {
	if err := validateUsers(users); err != nil {
		return nil, err
	}
	entries := make([]EnrolmentEntry, 0, len(users))
	for _, u := range users {
		entries = append(entries, EnrolmentEntry{Key: u.Email(), Tenant: u.Tenant(), UserID: u.ID(), Roles: u.Roles})
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("devoidc: encode enrolment table: %w", err)
	}
	return append(b, '\n'), nil
}

// WriteEnrolment writes EnrolmentTable(users) to path through a rename. The table holds no
// secret (addresses, IDs, roles), so it is readable by the edge's user (mode 0644).
func WriteEnrolment(path string, users []User) error {
	b, err := EnrolmentTable(users)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("devoidc: %w", err)
	}
	return nil
}
