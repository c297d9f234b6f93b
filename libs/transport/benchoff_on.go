//go:build !ztbench_off

package transport

import (
	"net/http"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// benchOff is false in every build but tools/pathbench's "zero trust off" reference build
// (build tag ztbench_off, benchoff.go). Being a constant, the branches it guards are
// compiled out of production binaries.
const benchOff = false

// The zero-trust-off stand-ins exist only in the ztbench_off build; these are never called.
func benchClient(Source, []ClientOption) *http.Client             { panic("unreachable") }
func benchIdentify([]spiffeid.ID) func(http.Handler) http.Handler { panic("unreachable") }
