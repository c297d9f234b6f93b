package observability

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads a service's /metrics from its plain health port.
func scrape(t *testing.T, health string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: status %d", health, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s/metrics: %v", health, err)
	}
	return mfs
}

// value returns the value of the series of family name whose labels include want, and
// whether it exists.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsExposed requires every traced service's /metrics to carry the platform's
// request, authorisation and identity metrics after serving one chain request, with the
// route pattern (not the raw path) as the route label.
func TestMetricsExposed(t *testing.T) {
	gw := traced["bank-b/gateway"]
	client := mintedClient(t, workloadID(t, "edge"), workloadID(t, "bank-b/gateway"))
	resp, err := client.Get("https://" + gw.listen + "/internal/chain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	for _, name := range chain {
		t.Run(name, func(t *testing.T) {
			mfs := scrape(t, traced[name].health)
			for _, m := range []struct {
				name   string
				labels map[string]string
			}{
				{"ztbank_http_requests_total", map[string]string{"route": "/internal/chain", "method": "GET", "status": "200"}},
				{"ztbank_http_request_duration_seconds", map[string]string{"route": "/internal/chain", "method": "GET"}},
				{"ztbank_authz_decisions_total", map[string]string{"service": name, "result": "allow"}},
				{"ztbank_svid_expiry_seconds", map[string]string{"spiffe_id": workloadID(t, name).String()}},
				{"ztbank_workloadapi_disconnects_total", nil},
			} {
				v, ok := value(mfs, m.name, m.labels)
				if !ok {
					t.Errorf("%s has no %s%v", name, m.name, m.labels)
					continue
				}
				if m.name == "ztbank_svid_expiry_seconds" && v <= 0 {
					t.Errorf("%s: SVID expires in %v seconds, want a positive number", name, v)
				}
			}
		})
	}
}

// TestDenialCounted sends a request the authorisation layer denies and requires the
// denial counter for that reason to go up by exactly one.
func TestDenialCounted(t *testing.T) {
	gw := traced["bank-b/gateway"]
	labels := map[string]string{"service": "bank-b/gateway", "result": "deny", "reason": "no_route"}
	before, _ := value(scrape(t, gw.health), "ztbank_authz_decisions_total", labels)

	client := mintedClient(t, workloadID(t, "edge"), workloadID(t, "bank-b/gateway"))
	resp, err := client.Get("https://" + gw.listen + "/internal/no-such-route")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown route answered %d, want 404", resp.StatusCode)
	}

	after, ok := value(scrape(t, gw.health), "ztbank_authz_decisions_total", labels)
	if !ok || after != before+1 {
		t.Errorf("ztbank_authz_decisions_total%v went from %v to %v (present %v), want +1", labels, before, after, ok)
	}
	unmatched, ok := value(scrape(t, gw.health), "ztbank_http_requests_total", map[string]string{"route": "unmatched", "status": "404"})
	if !ok || unmatched < 1 {
		t.Errorf("the 404 is not counted under route=\"unmatched\" (got %v, present %v)", unmatched, ok)
	}
}

// TestHandshakeFailureCounted connects to the gateway as a workload the topology does not
// let call it; the handshake is refused and counted with reason not_allowed.
func TestHandshakeFailureCounted(t *testing.T) {
	gw := traced["bank-b/gateway"]
	labels := map[string]string{"reason": "not_allowed"}
	before, _ := value(scrape(t, gw.health), "ztbank_mtls_handshake_failures_total", labels)

	client := mintedClient(t, workloadID(t, "bank-b/ledger"), workloadID(t, "bank-b/gateway"))
	client.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := client.Get("https://" + gw.listen + "/internal/whoami")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("ledger → gateway was answered %d; the topology forbids it", resp.StatusCode)
	}

	after, ok := value(scrape(t, gw.health), "ztbank_mtls_handshake_failures_total", labels)
	if !ok || after != before+1 {
		t.Errorf("ztbank_mtls_handshake_failures_total%v went from %v to %v (present %v), want +1", labels, before, after, ok)
	}
	if t.Failed() {
		t.Logf("gateway log tail: %s", tail(traced["bank-b/gateway"].logPath))
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// TestPolicyDenialCounted has the policy itself refuse a request — the bank-b gateway
// posting to the ledger, a route only the payment service may call — with a genuine user
// token, and requires the denial counter for that reason to go up by exactly one.
func TestPolicyDenialCounted(t *testing.T) {
	edge, ledger := traced["edge"], traced["bank-b/ledger"]
	// The internal JWT the edge mints for bob, from its ext_authz endpoint, asked as the
	// ingress (the only workload allowed to).
	req, _ := http.NewRequest("GET", "https://"+edge.public+"/authz/bank-b/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+userToken(t, "bob@bank-b"))
	resp, err := ingressClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	internal, ok := strings.CutPrefix(resp.Header.Get("Authorization"), "Bearer ")
	if resp.StatusCode != http.StatusOK || !ok {
		t.Fatalf("ext_authz answered %d without a token", resp.StatusCode)
	}

	labels := map[string]string{"service": "bank-b/ledger", "result": "deny", "reason": "workload_not_allowed"}
	before, _ := value(scrape(t, ledger.health), "ztbank_authz_decisions_total", labels)
	client := mintedClient(t, workloadID(t, "bank-b/gateway"), workloadID(t, "bank-b/ledger"))
	post, _ := http.NewRequest("POST", "https://"+ledger.listen+"/v1/postings", strings.NewReader(`{}`))
	post.Header.Set("Authorization", "Bearer "+internal)
	post.Header.Set("Content-Type", "application/json")
	resp, err = client.Do(post)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "decision_id") {
		t.Fatalf("gateway posting to the ledger: %d %s, want 403 with a decision_id", resp.StatusCode, body)
	}
	after, ok := value(scrape(t, ledger.health), "ztbank_authz_decisions_total", labels)
	if !ok || after != before+1 {
		t.Errorf("ztbank_authz_decisions_total%v went from %v to %v (present %v), want +1", labels, before, after, ok)
	}
}

// ingressClient trusts the dev CA like devCAClient and presents a genuine SVID minted for
// Emissary-ingress, the only caller the edge's ext_authz endpoint answers.
func ingressClient(t *testing.T) *http.Client {
	t.Helper()
	svid, err := st.MintSVID(context.Background(), workloadID(t, "emissary-ingress"))
	if err != nil {
		t.Fatal(err)
	}
	cert := svid.TLSCertificate()
	c := devCAClient(t)
	tr := c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	c.Transport = tr
	return c
}
