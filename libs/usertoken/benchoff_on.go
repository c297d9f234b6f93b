//go:build !ztbench_off

package usertoken

import "net/http"

// benchOff is true only in tools/pathbench's zero-trust-off reference build (benchoff.go).
const benchOff = false

// benchMiddleware exists only in the ztbench_off build; this one is never called.
func benchMiddleware(http.Handler) http.Handler { panic("unreachable") }
