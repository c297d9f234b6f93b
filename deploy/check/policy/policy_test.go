package policy_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ztbank/ztbank/deploy/check/manifest"
	"github.com/ztbank/ztbank/deploy/check/policy"
	"github.com/ztbank/ztbank/libs/topology"
)

var root = filepath.Join("..", "..", "..")

func build(t *testing.T, overlay string) []manifest.Object {
	t.Helper()
	objs, err := manifest.Build(filepath.Join(root, "deploy", "k8s", "overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func checker(t *testing.T) *policy.Checker {
	t.Helper()
	c, err := policy.New(context.Background(), topology.Default())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOverlaysPassPolicies: every overlay as committed satisfies every policy.
func TestOverlaysPassPolicies(t *testing.T) {
	c := checker(t)
	for _, overlay := range []string{"kind", "eks"} {
		t.Run(overlay, func(t *testing.T) {
			got, err := c.Check(context.Background(), build(t, overlay))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{}, got); diff != "" {
				t.Errorf("policy violations mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
