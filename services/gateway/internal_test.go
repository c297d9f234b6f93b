package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/problem"
)

// TestInternalRoutesRefuseUsers: the gateway's diagnostic routes answer a workload (the edge
// without a user, as the mTLS and tracing suites call them) but the policy refuses any
// request that carries a user, customer or staff, and the chain then calls no backend.
// Before the fix any logged-in user's request through the edge got 200 and a fan-out.
func TestInternalRoutesRefuseUsers(t *testing.T) {
	s := newStack(t, "bank-b")
	type answer struct {
		Status   int
		Type     string
		Backends int
	}
	for _, tc := range []struct {
		name, user, path string
		want             answer
	}{
		{"workload alone: whoami", "", "/internal/whoami", answer{http.StatusOK, "", 0}},
		{"workload alone: chain", "", "/internal/chain", answer{http.StatusOK, "", 2}},
		{"customer: whoami", "bob@bank-b", "/internal/whoami", answer{http.StatusForbidden, problem.TypePolicy, 0}},
		{"customer: chain", "bob@bank-b", "/internal/chain", answer{http.StatusForbidden, problem.TypePolicy, 0}},
		{"staff: chain", "erin@bank-b", "/internal/chain", answer{http.StatusForbidden, problem.TypePolicy, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := 0
			for _, b := range s.backends {
				before += len(b.requests())
			}
			tok := ""
			if tc.user != "" {
				tok = s.Token(tc.user)
			}
			resp, body := s.do("edge", tok, "GET", tc.path, nil, "")
			var p struct {
				Type string `json:"type"`
			}
			if resp.Status != http.StatusOK {
				_ = json.Unmarshal([]byte(body), &p)
			}
			after := 0
			for _, b := range s.backends {
				after += len(b.requests())
			}
			if diff := cmp.Diff(tc.want, answer{resp.Status, p.Type, after - before}); diff != "" {
				t.Errorf("GET %s (-want +got):\n%s\n%s", tc.path, diff, body)
			}
		})
	}
}
