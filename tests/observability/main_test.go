// Package observability proves, on real SPIRE and the real service binaries, that one
// request produces one trace across every hop with the proven identities on the spans, and
// that each service's plain port exports the platform metrics.
package observability

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// chain is the tenant path this package drives: bank-b's gateway calls payment and ledger,
// payment calls ledger. Requests enter either through the real edge with a user's token
// from the development OIDC provider, or straight at the gateway with a minted edge SVID.
var chain = []string{"bank-b/gateway", "bank-b/payment", "bank-b/ledger"}

// started is every workload this package runs traced: the edge and the chain.
var started = append([]string{"edge"}, chain...)

var (
	st        *teststack.Stack
	collector *spanCollector
	// traced are the stack's workloads, started with tracing pointed at collector.
	traced = map[string]*tracedService{}
)

func TestMain(m *testing.M) {
	collector = newSpanCollector()
	srv := httptest.NewServer(collector)
	teststack.Main(m, "ztobs", stack.Options{Services: started, FrontDoor: true, Postgres: true,
		Configure: func(s *stack.Stack) {
			for _, svc := range s.Services {
				svc.Env = append(svc.Env, "OTEL_EXPORTER_OTLP_ENDPOINT="+srv.URL,
					// Export within a fraction of a second instead of the default five.
					"OTEL_BSP_SCHEDULE_DELAY=100")
			}
		}}, func(s *teststack.Stack) int {
		defer srv.Close()
		st = s
		for name, svc := range st.Services {
			traced[name] = &tracedService{name: name, listen: svc.Listen, health: svc.Health, public: svc.Public, logPath: svc.LogPath}
		}
		code := m.Run()
		st.Stop() // flush and close the logs before reading them
		if leaks := scanLogsForSecrets(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: token or password material in logs:\n%s\n", strings.Join(leaks, "\n"))
			return 1
		}
		return code
	})
}

// tracedService is one of the stack's workloads, all started with tracing pointed at
// collector.
type tracedService struct {
	name, listen, health, logPath string
	public                        string // the edge's client-facing HTTPS address
}

// exportedSpan is one span as the collector received it, with its process's workload.
type exportedSpan struct {
	Workload string
	Span     *tracepb.Span
}

// spanCollector is an OTLP/HTTP trace receiver (protobuf encoding) that keeps every span.
type spanCollector struct {
	mu    sync.Mutex
	spans []exportedSpan
}

func newSpanCollector() *spanCollector { return &spanCollector{} }

func (c *spanCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, "not an ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		workload := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "ztbank.workload" {
				workload = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, exportedSpan{Workload: workload, Span: s})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// trace returns the spans received so far for traceID.
func (c *spanCollector) trace(traceID []byte) []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []exportedSpan
	for _, s := range c.spans {
		if string(s.Span.GetTraceId()) == string(traceID) {
			out = append(out, s)
		}
	}
	return out
}
