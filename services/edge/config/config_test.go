package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/topology"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfig(t *testing.T) {
	topo := topology.Default()
	got, err := loadEdge(envOf(map[string]string{
		"EDGE_ISSUERS":      "bank-a=https://idp.example, bank-b=https://idp.example,bank-b=http://127.0.0.1:9000",
		"EDGE_KEY_ROTATION": "30m",
		"EDGE_ENROLMENT":    "/etc/ztbank/enrolment.json",
	}), topo)
	if err != nil {
		t.Fatal(err)
	}
	want := Edge{
		PublicListen:   "127.0.0.1:8443",
		Issuers:        map[string][]string{"bank-a": {"https://idp.example"}, "bank-b": {"https://idp.example", "http://127.0.0.1:9000"}},
		Audience:       "ztbank",
		Enrolment:      "/etc/ztbank/enrolment.json",
		EnrolmentClaim: "email",
		TokenTTL:       5 * time.Minute,
		KeyRotation:    30 * time.Minute,
		KeyOverlap:     6 * time.Minute,
		KeyRefresh:     10 * time.Second,
		KeyAhead:       time.Minute,
		AuthzPrefix:    "/authz",
		MaxHeaderBytes: 16 << 10,
		MaxBodyBytes:   1 << 20,
		UserRate:       20,
		UserBurst:      40,
		TenantRate:     400,
		TenantBurst:    800,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loadEdge() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"http://127.0.0.1:9000", "https://idp.example"}, got.AllIssuers()); diff != "" {
		t.Errorf("allIssuers() mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigComposeNames(t *testing.T) {
	got, err := loadEdge(envOf(map[string]string{
		"ZTBANK_OIDC_ISSUER":      "http://devoidc:9998",
		"ZTBANK_PUBLIC_LISTEN":    ":8080",
		"EDGE_ALLOW_HTTP_ISSUERS": "true",
		"EDGE_ENROLMENT":          "claims",
	}), topology.Default())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"bank-a": {"http://devoidc:9998"}, "bank-b": {"http://devoidc:9998"}}
	if diff := cmp.Diff(want, got.Issuers); diff != "" {
		t.Errorf("Issuers mismatch (-want +got):\n%s", diff)
	}
	if got.PublicListen != ":8080" {
		t.Errorf("PublicListen = %q, want :8080", got.PublicListen)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	topo := topology.Default()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no issuers", map[string]string{}, "EDGE_ISSUERS is not set"},
		{"unknown tenant", map[string]string{"EDGE_ISSUERS": "bank-z=https://idp"}, "not in the topology"},
		{"plain http off loopback", map[string]string{"EDGE_ISSUERS": "bank-a=http://idp.example"}, "https URL"},
		{"not a pair", map[string]string{"EDGE_ISSUERS": "https://idp"}, "want tenant=issuer-url"},
		{"bad duration", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_TOKEN_TTL": "soon"}, "EDGE_TOKEN_TTL"},
		{"cert without key", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_TLS_CERT": "c.pem"}, "set together"},
		{"http issuer in compose without opt-in", map[string]string{"ZTBANK_OIDC_ISSUER": "http://devoidc:9998"}, "EDGE_ALLOW_HTTP_ISSUERS"},
		{"no enrolment: never the demo table by default", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp"}, "EDGE_ENROLMENT is not set"},
		{"bad prefix", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_AUTHZ_PREFIX": "authz/"}, "EDGE_AUTHZ_PREFIX"},
		{"key store kind", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_KEY_STORE": "s3:bucket"}, "EDGE_KEY_STORE"},
		{"key store without path", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_KEY_STORE": "dir:"}, "EDGE_KEY_STORE"},
		// 3×10s + 5s = 35s: a key published 30s ahead could sign before a stale-but-serving
		// replica or a verifier that just fetched has it.
		{"publish-ahead under staleness", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_KEY_STORE": "dir:/k", "EDGE_KEY_PUBLISH_AHEAD": "30s"}, "EDGE_KEY_PUBLISH_AHEAD"},
		{"rotation under publish-ahead", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_KEY_STORE": "dir:/k", "EDGE_KEY_ROTATION": "50s"}, "EDGE_KEY_ROTATION"},
		{"overlap under ttl", map[string]string{"EDGE_ISSUERS": "bank-a=https://idp", "EDGE_KEY_STORE": "dir:/k", "EDGE_KEY_OVERLAP": "1m"}, "EDGE_KEY_OVERLAP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadEdge(envOf(tc.env), topo)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadEdge() error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestLoadLimits: the edge's rate limits are read from its environment, 0 turns one off, and
// a value that is not a number of requests per second is a one-line error naming it.
func TestLoadLimits(t *testing.T) {
	base := map[string]string{"ZTBANK_OIDC_ISSUER": "https://idp.example", "EDGE_ENROLMENT": "claims"}
	env := func(extra map[string]string) func(string) string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return envOf(m)
	}
	got, err := loadEdge(env(map[string]string{"EDGE_RATE_PER_USER": "2.5", "EDGE_BURST_PER_USER": "5",
		"EDGE_RATE_PER_TENANT": "0", "EDGE_BURST_PER_TENANT": "7"}), topology.Default())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{2.5, 5, 0.0, 7}, []any{got.UserRate, got.UserBurst, got.TenantRate, got.TenantBurst}); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
	for _, bad := range []map[string]string{{"EDGE_RATE_PER_USER": "-1"}, {"EDGE_RATE_PER_TENANT": "fast"}, {"EDGE_BURST_PER_USER": "0"}} {
		if _, err := loadEdge(env(bad), topology.Default()); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
