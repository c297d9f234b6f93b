// Package caller carries the authenticated identity of the party behind a request: the
// workload that opened the connection (from mTLS or, in mesh mode, the sidecar's XFCC header)
// and, when an internal JWT was verified, the end user it speaks for. Handlers, policy and logs
// read it from the request context; nothing else in a request is trusted for identity.
package caller

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Identity is everything the platform has proven about a request's origin.
type Identity struct {
	// Workload is the SPIFFE ID of the peer workload, proven by mTLS (or the mesh).
	Workload spiffeid.ID
	// User is set once an internal JWT has been verified; zero otherwise.
	User User
}

// User is the end user an internal JWT speaks for.
type User struct {
	ID      spiffeid.ID // spiffe://<tenant>/user/<id>
	Tenant  string
	Roles   []string
	TokenID string // jti of the internal JWT, for audit
	Token   string // the raw internal JWT, forwarded on downstream calls
}

// HasUser reports whether a verified user is attached.
func (i Identity) HasUser() bool { return !i.User.ID.IsZero() }

type ctxKey struct{}

// WithWorkload returns a context carrying the peer workload ID.
func WithWorkload(ctx context.Context, id spiffeid.ID) context.Context {
	cur := From(ctx)
	cur.Workload = id
	return context.WithValue(ctx, ctxKey{}, cur)
}

// WithUser returns a context carrying the verified user.
func WithUser(ctx context.Context, u User) context.Context {
	cur := From(ctx)
	cur.User = u
	return context.WithValue(ctx, ctxKey{}, cur)
}

// From returns the identity in ctx; the zero Identity when none was established.
func From(ctx context.Context) Identity {
	id, _ := ctx.Value(ctxKey{}).(Identity)
	return id
}
