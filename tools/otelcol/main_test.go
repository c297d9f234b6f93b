package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var shipped = filepath.Join("..", "..", "deploy", "observability", "otelcol", "config.yaml")

// TestShippedConfigValidates runs `otelcol validate` (the collector's own config loader,
// component factories and pipeline checks) on the configuration the overlays ship, and on
// planted defects that must be refused, so a pass means the loader really checked something.
func TestShippedConfigValidates(t *testing.T) {
	good, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		old     string // replaced in the shipped config; empty: the config as shipped
		new     string
		wantErr string
	}{
		{name: "shipped"},
		{name: "misspelt field", old: "send_batch_size:", new: "send_batch_sise:", wantErr: "send_batch_sise"},
		{name: "component not built here", old: "otlphttp/loki:", new: "loki:", wantErr: "loki"},
		{name: "pipeline names a missing exporter", old: "exporters: [otlp/jaeger]", new: "exporters: [otlp/tempo]", wantErr: "otlp/tempo"},
		{name: "memory limit above spike", old: "spike_limit_mib: 50", new: "spike_limit_mib: 250", wantErr: "spike"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := string(good)
			if tc.old != "" {
				if !strings.Contains(cfg, tc.old) {
					t.Fatalf("anchor %q not in %s; update the test", tc.old, shipped)
				}
				cfg = strings.Replace(cfg, tc.old, tc.new, 1)
			}
			p := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			err := run(t.Context(), []string{"validate", "--config=file:" + p}, &out, &errOut)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validate refused the shipped config: %v\n%s", err, errOut.String())
			case tc.wantErr != "" && err == nil:
				t.Fatalf("validate accepted a config with %s", tc.name)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not name %q", err, tc.wantErr)
			}
		})
	}
}
