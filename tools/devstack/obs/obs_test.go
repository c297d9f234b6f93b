package obs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/localspire"
)

// TestPrometheusScrapesTargets starts the real Prometheus with the repository's alert
// rules, points it at a stand-in service's /metrics through SetTargets, and waits until
// Prometheus reports the target up with the labels a cluster scrape gives it.
func TestPrometheusScrapesTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatal("prometheus not found on PATH: install the Debian package `prometheus` (make obs-tools)")
	}
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# TYPE ztbank_svid_expiry_seconds gauge")
		fmt.Fprintln(w, `ztbank_svid_expiry_seconds{spiffe_id="spiffe://ztbank.local/ns/bank-a/sa/user"} 1800`)
	}))
	defer svc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ep, stop, err := Start(ctx, t.TempDir(), WithFreePorts(), WithoutJaeger())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := ep.SetTargets([]Target{{Workload: "bank-a/user", Namespace: "bank-a", Service: "user", Addr: svc.Listener.Addr().String()}}); err != nil {
		t.Fatal(err)
	}

	type target struct {
		Labels map[string]string `json:"labels"`
		Health string            `json:"health"`
	}
	var got target
	for deadline := time.Now().Add(60 * time.Second); ; {
		var body struct {
			Data struct {
				ActiveTargets []target `json:"activeTargets"`
			} `json:"data"`
		}
		if err := getJSON(ep.Prometheus+"/api/v1/targets", &body); err == nil && len(body.Data.ActiveTargets) == 1 {
			got = body.Data.ActiveTargets[0]
			if got.Health == "up" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not report the target up within 60s (last: %+v)", got)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The labels a ServiceMonitor scrape would give the same target (ADR 0975); job is the
	// target's own label, not the scrape job's name.
	want := map[string]string{"namespace": "bank-a", "service": "user", "job": "user", "pod": "bank-a-user",
		"container": "user", "endpoint": "http-health", "instance": svc.Listener.Addr().String()}
	if diff := cmp.Diff(want, got.Labels); diff != "" {
		t.Errorf("target labels mismatch (-want +got):\n%s", diff)
	}

	var rules struct {
		Data struct {
			Groups []struct {
				Name string `json:"name"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(ep.Prometheus+"/api/v1/rules", &rules); err != nil {
		t.Fatal(err)
	}
	if len(rules.Data.Groups) == 0 {
		t.Error("Prometheus loaded no alert rule groups from deploy/observability")
	}
	if env := ep.Env(); len(env) == 0 || env[0] != "OTEL_EXPORTER_OTLP_ENDPOINT="+ep.OTLPHTTP {
		t.Errorf("Env() = %v, want the OTLP endpoint first", env)
	}
}

// TestJaegerStarts starts Jaeger from an already built binary (ZTBANK_JAEGER_BIN or
// .dev/bin/jaeger); building it is many minutes, which `make dev OBS=1` does once.
func TestJaegerStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Jaeger")
	}
	bin := os.Getenv("ZTBANK_JAEGER_BIN")
	if bin == "" {
		root, err := localspire.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		bin = root + "/.dev/bin/jaeger"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no Jaeger binary at %s: build it with `cd tools/jaeger && GOWORK=off go build -o ../../.dev/bin/jaeger github.com/jaegertracing/jaeger/cmd/jaeger`", bin)
	}
	// The deploy configuration (compose, clusters) must be one this Jaeger accepts.
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "validate", "--config", root+"/deploy/observability/jaeger/config.yaml").CombinedOutput(); err != nil {
		t.Errorf("jaeger validate deploy/observability/jaeger/config.yaml: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ep, stop, err := Start(ctx, t.TempDir(), WithFreePorts(), WithoutPrometheus(), WithJaegerBinary(bin))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// An empty OTLP/HTTP export is a valid request; a 200 shows the receiver is up where
	// Env tells services to send.
	resp, err := http.Post(ep.OTLPHTTP+"/v1/traces", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("OTLP/HTTP receiver answered %d, want 200", resp.StatusCode)
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
