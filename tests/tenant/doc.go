// Package tenant holds the end-to-end test of `make tenant` (issue 13, ADR 0955): in a copy
// of the tree it adds bank-c, runs the isolation suite against the local stack with three
// tenants and removes bank-c again. The test needs the build tag tenantstack, which only
// `make tenant-test` sets: it takes minutes and starts a whole stack, so `make unit` leaves
// it out without listing a skip.
package tenant
