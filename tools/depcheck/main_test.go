package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDrift(t *testing.T) {
	for _, tc := range []struct {
		name string
		reqs map[string]map[string]string
		want []string
	}{
		{"agreeing modules", map[string]map[string]string{
			"libs/go.mod":          {"github.com/spiffe/go-spiffe/v2": "v2.9.0", "golang.org/x/net": "v0.1.0"},
			"services/a/go.mod":    {"github.com/spiffe/go-spiffe/v2": "v2.9.0", "golang.org/x/net": "v0.2.0"},
			"services/b/go.mod":    {"github.com/open-policy-agent/opa": "v1.22.3"},
			"services/edge/go.mod": {"github.com/open-policy-agent/opa": "v1.22.3"},
		}, nil},
		{"go-spiffe drift", map[string]map[string]string{
			"libs/go.mod":       {"github.com/spiffe/go-spiffe/v2": "v2.9.0"},
			"services/a/go.mod": {"github.com/spiffe/go-spiffe/v2": "v2.8.0"},
		}, []string{"github.com/spiffe/go-spiffe/v2: v2.8.0 (services/a/go.mod) vs v2.9.0 (libs/go.mod)"}},
		{"otel sub-module drift", map[string]map[string]string{
			"libs/go.mod":  {"go.opentelemetry.io/otel/sdk": "v1.47.0"},
			"tools/go.mod": {"go.opentelemetry.io/otel/sdk": "v1.46.0"},
		}, []string{"go.opentelemetry.io/otel/sdk: v1.46.0 (tools/go.mod) vs v1.47.0 (libs/go.mod)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Drift(tc.reqs)); diff != "" {
				t.Errorf("Drift() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
