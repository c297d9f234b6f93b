//go:build ztbench_off

// The policy half of tools/pathbench's "zero trust off" reference build (issue 14): no
// decision, no audit line. Production builds never carry the tag (tests/benchtag), and
// libs/transport's half refuses to start outside the harness.

package authz

const benchOff = true
