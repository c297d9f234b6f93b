package authz

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
)

// RoutePermission is one route of a service's router with the authorisation its Require
// declares: the permission, the workloads it is restricted to (From and FromSameTenant,
// resolved to workload names) and whether it takes no end user.
type RoutePermission struct {
	Method       string   `json:"method"`
	Pattern      string   `json:"pattern"`
	Permission   string   `json:"permission"`
	From         []string `json:"from,omitempty"`
	WorkloadOnly bool     `json:"workload_only,omitempty"`
}

// RoutePermissions lists every route of router with what its Require demands, read from the
// built routes themselves, so what a service publishes about its routes is what routes.go
// declares and not a second, hand-kept table. A route without Require is listed with an
// empty permission (Guarded reports those). Sorted by pattern, then method.
func RoutePermissions(router chi.Routes) ([]RoutePermission, error) {
	var out []RoutePermission
	err := chi.Walk(router, func(method, route string, _ http.Handler, mws ...func(http.Handler) http.Handler) error {
		rp := RoutePermission{Method: method, Pattern: route}
		for _, mw := range mws {
			if reflect.ValueOf(mw).Pointer() != guardCode {
				continue
			}
			// Building the middleware around a handler that is never called serves nothing:
			// it only returns the guardedHandler that holds the route's guard.
			if h, ok := mw(http.NotFoundHandler()).(*guardedHandler); ok {
				rp.Permission = h.g.perm
				rp.From = slices.Clone(h.g.opts.from)
				slices.Sort(rp.From)
				rp.WorkloadOnly = h.g.opts.workloadOnly
			}
		}
		out = append(out, rp)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk routes: %w", err)
	}
	slices.SortFunc(out, func(a, b RoutePermission) int {
		if c := strings.Compare(a.Pattern, b.Pattern); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return out, nil
}
