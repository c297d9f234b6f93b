package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCapBnd(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status      string
		wantMask    string
		wantMissing []string
	}{
		{"every capability", "Name:\tx\nCapBnd:\t000001ffffffffff\n", "000001ffffffffff", nil},
		{"sandbox without SYS_RESOURCE", "CapBnd:\t000001fffeffffff\n", "000001fffeffffff", []string{"SYS_RESOURCE"}},
		{"docker default set", "CapBnd:\t00000000a80425fb\n", "00000000a80425fb", nil},
		{"no line", "Name:\tx\n", "unknown", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mask, missing := parseCapBnd(tc.status)
			if mask != tc.wantMask {
				t.Errorf("mask = %q, want %q", mask, tc.wantMask)
			}
			if tc.name == "docker default set" {
				// The default set lacks SYS_ADMIN among many others: spot-check one.
				if !slices.Contains(missing, "SYS_ADMIN") {
					t.Errorf("missing = %v, want SYS_ADMIN among them", missing)
				}
				return
			}
			if diff := cmp.Diff(tc.wantMissing, missing); diff != "" {
				t.Errorf("missing (-want +got):\n%s", diff)
			}
		})
	}
}

// The verdict depends only on kind's own variant: a near-privileged container that works
// does not make kind work, because kind always passes --privileged.
func TestVerdictFollowsKindsOwnFlags(t *testing.T) {
	pass := []check{{Name: "a", OK: true}}
	for _, tc := range []struct {
		name string
		r    report
		want bool
	}{
		{"privileged refused", report{Variants: []result{{Error: "unable to apply caps"}, {Started: true, Checks: pass}}}, false},
		{"privileged starts, a check fails", report{Variants: []result{{Started: true, Checks: []check{{Name: "cgroup"}}}}}, false},
		{"privileged starts, all pass", report{Variants: []result{{Started: true, Checks: pass}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.kindCanRun(); got != tc.want {
				t.Errorf("kindCanRun() = %v, want %v", got, tc.want)
			}
			verdict := "kind cannot create nodes"
			if tc.want {
				verdict = "kind can create nodes"
			}
			if !strings.Contains(tc.r.markdown(), verdict) {
				t.Errorf("report lacks %q:\n%s", verdict, tc.r.markdown())
			}
		})
	}
}
