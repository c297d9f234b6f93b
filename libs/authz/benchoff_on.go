//go:build !ztbench_off

package authz

// benchOff is true only in tools/pathbench's zero-trust-off reference build (build tag
// ztbench_off, benchoff.go): Require, Check and Audit then let every request through
// undecided and unaudited. A constant, so production binaries carry none of that.
const benchOff = false
