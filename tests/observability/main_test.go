// Package observability proves, on real SPIRE and the real service binaries, that one
// request produces one trace across every hop with the proven identities on the spans, and
// that each service's plain port exports the platform metrics.
package observability

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ztbank/ztbank/libs/localspire"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// chain is the tenant path this package drives: bank-b's gateway calls payment and ledger,
// payment calls ledger. Requests enter either through the real edge with a user's token
// from the development OIDC provider, or straight at the gateway with a minted edge SVID.
var chain = []string{"bank-b/gateway", "bank-b/payment", "bank-b/ledger"}

// started is every workload this package runs traced: the edge and the chain.
var started = append([]string{"edge"}, chain...)

var (
	st        *stack.Stack
	tmpRoot   string
	collector *spanCollector
	// traced are the workloads started by this package with tracing pointed at collector.
	traced = map[string]*tracedService{}
)

func TestMain(m *testing.M) {
	for _, a := range os.Args {
		if a == "-test.short=true" || a == "-test.short" {
			fmt.Println("skipping observability integration tests in -short mode")
			os.Exit(0)
		}
	}
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := localspire.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Unix socket paths must stay short, so not t.TempDir() under a long test name.
	tmpRoot, err = os.MkdirTemp("", "ztobs")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmpRoot)
	collector = newSpanCollector()
	srv := httptest.NewServer(collector)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	st, err = stack.Start(ctx, stack.Options{Root: root, StateDir: tmpRoot, FreePorts: true,
		Services: started, FrontDoor: true, Postgres: true, Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local stack:", err)
		return 1
	}
	defer st.Stop()
	defer stopTraced()
	if err := startTraced(ctx, srv.URL); err != nil {
		fmt.Fprintln(os.Stderr, "start traced services:", err)
		return 1
	}
	code := m.Run()
	stopTraced() // flush and close the logs before reading them
	if leaks := scanLogsForSecrets(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: token or password material in logs:\n%s\n", strings.Join(leaks, "\n"))
		return 1
	}
	return code
}

// tracedService is a second instance of a stack workload's binary, started by this package
// with OTEL_EXPORTER_OTLP_ENDPOINT set. It runs the same binary path, so SPIRE issues it
// the same SVID as the stack's instance; its peers are the other traced instances.
//
// The stack's own instances are started without tracing: stack.Options has no way to add
// environment to every service yet. Once it does, these can go and the test can drive the
// stack's processes directly.
type tracedService struct {
	name, listen, health, logPath string
	public                        string // the edge's client-facing HTTPS address
	cmd                           *exec.Cmd
}

func startTraced(ctx context.Context, otlpURL string) error {
	ports, err := stack.FreePorts(3 * len(started))
	if err != nil {
		return err
	}
	for i, name := range started {
		traced[name] = &tracedService{name: name,
			listen:  fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			health:  fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			public:  fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
			logPath: filepath.Join(tmpRoot, "traced", strings.ReplaceAll(name, "/", "_")+".log")}
	}
	for _, name := range started {
		ts, svc := traced[name], st.Services[name]
		if svc == nil {
			return fmt.Errorf("stack did not start %s", name)
		}
		env := []string{
			"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
			"ZTBANK_WORKLOAD=" + name, "ZTBANK_TRANSPORT_MODE=direct",
			"SPIFFE_ENDPOINT_SOCKET=unix://" + st.Spire.AgentSock,
			"ZTBANK_LISTEN=" + ts.listen, "ZTBANK_HEALTH_LISTEN=" + ts.health,
			"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlpURL,
			// Export within a fraction of a second instead of the default five.
			"OTEL_BSP_SCHEDULE_DELAY=100",
		}
		for peer, p := range traced {
			env = append(env, "ZTBANK_PEER_ADDR_"+envName(peer)+"="+p.listen)
		}
		// The stack's extra settings (the edge's certificate, OIDC issuer), then this
		// instance's own public address; exec keeps the last value of a repeated key.
		env = append(env, svc.Env...)
		if svc.Public != "" {
			env = append(env, "ZTBANK_PUBLIC_LISTEN="+ts.public)
		}
		if err := os.MkdirAll(filepath.Dir(ts.logPath), 0o755); err != nil {
			return err
		}
		logf, err := os.Create(ts.logPath)
		if err != nil {
			return err
		}
		cmd := exec.Command(svc.Binary)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %w", name, err)
		}
		go func() { cmd.Wait(); logf.Close() }()
		ts.cmd = cmd
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range started {
		ts := traced[name]
		for {
			resp, err := http.Get("http://" + ts.health + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				b, _ := os.ReadFile(ts.logPath)
				return fmt.Errorf("%s not ready within 60s; its log:\n%s", name, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func stopTraced() {
	for _, ts := range traced {
		if ts.cmd != nil && ts.cmd.Process != nil {
			ts.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, ts := range traced {
		if ts.cmd == nil || ts.cmd.Process == nil {
			continue
		}
		done := make(chan struct{})
		go func() { ts.cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			ts.cmd.Process.Kill()
		}
		ts.cmd = nil // stopped; runMain's deferred call finds nothing left to do
	}
}

func envName(name string) string {
	return strings.ToUpper(strings.NewReplacer("/", "_", "-", "_").Replace(name))
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
