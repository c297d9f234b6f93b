// Package problem writes RFC 9457 problem details and maps the library's error categories
// to HTTP status codes in one place, so no handler chooses a status on its own and no
// response leaks internals.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Error categories. Wrap one of these (with %w) to choose the response status.
var (
	ErrBadRequest      = errors.New("bad request")             // 400
	ErrUnauthenticated = errors.New("unauthenticated")         // 401
	ErrForbidden       = errors.New("forbidden")               // 403
	ErrNotFound        = errors.New("not found")               // 404
	ErrConflict        = errors.New("conflict")                // 409
	ErrTooLarge        = errors.New("request too large")       // 413 / 431
	ErrUnprocessable   = errors.New("unprocessable")           // 422
	ErrUnavailable     = errors.New("temporarily unavailable") // 503
	// ErrContended is the ErrUnavailable of work that kept conflicting with concurrent work
	// on the same data (a hot account's serializable postings) until the server stopped
	// retrying: nothing was applied and a later retry can succeed. Its own problem type
	// (TypeContention) tells a client, and an operator, contention from an outage.
	ErrContended = fmt.Errorf("contended: %w", ErrUnavailable) // 503
)

// Details is an RFC 9457 problem document. Extension members go in Extra.
type Details struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Extra    map[string]any `json:"-"`
}

// MarshalJSON flattens Extra into the top-level object as RFC 9457 extension members.
func (d Details) MarshalJSON() ([]byte, error) {
	m := map[string]any{"type": d.Type, "title": d.Title, "status": d.Status}
	if d.Detail != "" {
		m["detail"] = d.Detail
	}
	if d.Instance != "" {
		m["instance"] = d.Instance
	}
	for k, v := range d.Extra {
		if _, taken := m[k]; !taken {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// Public is an error whose message is safe to show to the client. Anything else is
// replaced by the category's title.
type Public struct {
	Category error
	Msg      string
	Extra    map[string]any
	// Type, when set, is the problem type URI instead of the category's: an enforcement
	// layer's refusal mark (see Refuse).
	Type string
}

func (p *Public) Error() string { return p.Msg }
func (p *Public) Unwrap() error { return p.Category }

// Errorf returns an error in category cat whose message is shown to the client.
func Errorf(cat error, msg string) error { return &Public{Category: cat, Msg: msg} }

// With returns an error in category cat shown with msg and extra extension members
// (for example the authorisation decision ID).
func With(cat error, msg string, extra map[string]any) error {
	return &Public{Category: cat, Msg: msg, Extra: extra}
}

// Refusal marks: the problem type each enforcement layer writes when it refuses a request.
// The status code alone cannot say which layer answered (the edge and a service both
// answer 401 and 403), so every layer names itself in the type, and a client, an operator
// or the isolation suite reads the layer from there. Each mark is written by exactly one
// layer's code.
const (
	// TypeEdge: the edge refused the client — no or invalid external token, user not
	// enrolled, untrusted issuer, another tenant's route, client-set identity headers, an
	// ext_authz caller that is not the ingress (services/edge).
	TypeEdge = TypeBase + "edge-refused"
	// TypePeer: a service refused the calling workload at the application layer (no
	// workload identity, or one its allowlist does not hold; transport.Identify). In direct
	// mode the handshake refuses such peers first, with a TLS alert, not a problem.
	TypePeer = TypeBase + "peer-not-allowed"
	// TypeInternalToken: a service refused the internal JWT (missing, bad signature, wrong
	// issuer, audience or tenant, expired; usertoken.Middleware).
	TypeInternalToken = TypeBase + "internal-token-refused"
	// TypePolicy: the embedded policy denied the request; the body carries decision_id
	// (authz.Require and authz.Check).
	TypePolicy = TypeBase + "policy-denied"
	// TypeBusinessRule: a business rule refused a well-formed, authorised request
	// (ErrUnprocessable's type: owner not a customer, insufficient funds...).
	TypeBusinessRule = TypeBase + "business-rule"
	// TypeNotFound: the tenant's data holds no such resource (ErrNotFound's type: a handler
	// looked the row up in the tenant's own database and found none).
	TypeNotFound = TypeBase + "not-found"
	// TypeNoRoute: nothing is served at this path (the router's own 404, never a data
	// lookup).
	TypeNoRoute = TypeBase + "no-such-route"
	// TypeIdentityExpired: a service refused a request on an mTLS connection whose peer
	// certificate has passed its NotAfter, or while its own SVID has expired and it can no
	// longer prove who it is (transport.FailClosed, ADR 0989). A 503: it clears on a new
	// connection once the SVIDs are renewed.
	TypeIdentityExpired = TypeBase + "identity-expired"
	// TypeContention: ErrContended's type, a 503 for work that lost to concurrent work on the
	// same data more often than the server retries (libs/db's ErrRetriesExhausted).
	TypeContention = TypeBase + "contention"
)

// Refuse returns an error in category cat, shown with msg and extra extension members,
// whose problem type is the refusing layer's mark typ (one of the Type constants).
func Refuse(typ string, cat error, msg string, extra map[string]any) error {
	return &Public{Category: cat, Msg: msg, Extra: extra, Type: typ}
}

var categories = []struct {
	err    error
	status int
	slug   string
}{
	{ErrBadRequest, http.StatusBadRequest, "bad-request"},
	{ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrNotFound, http.StatusNotFound, "not-found"}, // TypeNotFound
	{ErrConflict, http.StatusConflict, "conflict"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "too-large"},
	{ErrUnprocessable, http.StatusUnprocessableEntity, "business-rule"}, // TypeBusinessRule
	// Before ErrUnavailable, which it wraps: the first category err is in names its type.
	{ErrContended, http.StatusServiceUnavailable, "contention"}, // TypeContention
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
}

// UnavailableRetryAfter is the Retry-After sent with a 503 that does not set its own: long
// enough for a pool to reconnect after a database restart, short enough that a client does
// not wait out a blip.
const UnavailableRetryAfter = 2 * time.Second

// TypeBase prefixes every problem type URI.
const TypeBase = "https://ztbank.dev/problems/"

// From maps err to a problem document. Unknown errors become a 500 with no detail.
func From(err error) Details {
	for _, c := range categories {
		if errors.Is(err, c.err) {
			d := Details{Type: TypeBase + c.slug, Title: http.StatusText(c.status), Status: c.status}
			var p *Public
			if errors.As(err, &p) {
				d.Detail = p.Msg
				d.Extra = p.Extra
				if p.Type != "" {
					d.Type = p.Type
				}
			}
			return d
		}
	}
	for _, unavailable := range unavailableChecks {
		if unavailable(err) {
			return From(fmt.Errorf("%w: %w", ErrUnavailable, err))
		}
	}
	return Details{Type: TypeBase + "internal", Title: http.StatusText(http.StatusInternalServerError), Status: http.StatusInternalServerError}
}

// unavailableChecks classify otherwise unknown errors as a dependency being temporarily
// unavailable (503), see RegisterUnavailable.
var unavailableChecks []func(error) bool

// RegisterUnavailable adds a classifier of errors that mean a dependency cannot take work
// right now. libs/db registers its own at init, so a database outage is a 503 wherever a
// store's error surfaces, inside db.Transact or not. Call it from init only.
func RegisterUnavailable(f func(error) bool) { unavailableChecks = append(unavailableChecks, f) }

// Write sends err as problem+json. Server errors are logged with the full error, which
// never reaches the client.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	d := From(err)
	if d.Status >= 500 {
		slog.Default().ErrorContext(contextOf(r), "request failed", "err", err.Error())
	}
	if d.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// A 503 is a promise that a retry can succeed; say when (RFC 9110 §10.2.3).
		w.Header().Set("Retry-After", strconv.Itoa(int(UnavailableRetryAfter/time.Second)))
	}
	if r != nil {
		d.Instance = r.URL.Path
	}
	WriteDetails(w, d)
}

// Handle adapts a handler that returns its error instead of writing it: a non-nil error is
// written with Write, so a service's handlers end with "return err" and the status of every
// failure is chosen here. A handler that has begun its response returns nil.
func Handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			Write(w, r, err)
		}
	}
}

// WriteDetails sends a prepared problem document.
func WriteDetails(w http.ResponseWriter, d Details) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(d.Status)
	_ = json.NewEncoder(w).Encode(d)
}

func contextOf(r *http.Request) context.Context {
	if r == nil {
		return context.Background()
	}
	return r.Context()
}
