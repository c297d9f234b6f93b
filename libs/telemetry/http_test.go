package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ztbank/ztbank/libs/caller"
)

var (
	gatewayID = spiffeid.RequireFromString("spiffe://ztbank.local/ns/bank-a/sa/gateway")
	aliceID   = spiffeid.RequireFromString("spiffe://bank-a/user/alice")
)

func inMemory(t *testing.T) (*tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return exp, tp
}

var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// identify stands in for transport.Identify and the user-token middleware: it attaches the
// identity a real request would have proven.
func identify(user bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := caller.WithWorkload(r.Context(), gatewayID)
			if user {
				ctx = caller.WithUser(ctx, caller.User{ID: aliceID, Tenant: "bank-a", Token: "secret-internal-jwt"})
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestServerSpanAndMetrics(t *testing.T) {
	exp, tp := inMemory(t)
	reg := prometheus.NewRegistry()
	r := chi.NewRouter()
	r.Use(Server(WithTracerProvider(tp), WithPropagator(w3c), WithRegisterer(reg)), identify(true), Annotate)
	r.Get("/v1/accounts/{accountID}", func(w http.ResponseWriter, r *http.Request) {
		AnnotateDecision(r.Context(), "dec-123", false, "not_owner")
		http.Error(w, "forbidden", http.StatusForbidden)
	})
	r.Get("/boom", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })

	for _, path := range []string{"/v1/accounts/acc-1", "/v1/accounts/acc-2", "/boom", "/nothing-here"} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	}

	spans := exp.GetSpans()
	if len(spans) != 4 {
		t.Fatalf("got %d spans, want 4", len(spans))
	}
	first := spans[0]
	if first.SpanKind != trace.SpanKindServer {
		t.Errorf("span kind %v, want server", first.SpanKind)
	}
	want := map[string]string{
		"http.request.method":       "GET",
		"http.route":                "/v1/accounts/{accountID}",
		"http.response.status_code": "403",
		AttrCaller:                  gatewayID.String(),
		AttrUser:                    aliceID.String(),
		AttrTenant:                  "bank-a",
		AttrDecisionID:              "dec-123",
		AttrDecisionResult:          "deny",
		AttrDecisionReason:          "not_owner",
	}
	if diff := cmp.Diff(want, attrs(first.Attributes)); diff != "" {
		t.Errorf("span attributes mismatch (-want +got):\n%s", diff)
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.Emit(), "secret-internal-jwt") {
				t.Errorf("span %s attribute %s carries the internal JWT", s.Name, kv.Key)
			}
		}
	}
	wantNames := []string{"GET /v1/accounts/{accountID}", "GET /v1/accounts/{accountID}", "GET /boom", "GET unmatched"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("span names mismatch (-want +got):\n%s", diff)
	}
	if spans[2].Status.Code.String() != "Error" {
		t.Errorf("502 span status %v, want Error", spans[2].Status.Code)
	}

	const wantMetrics = `
# HELP ztbank_http_requests_total HTTP requests served on the API port, by chi route pattern, method and status.
# TYPE ztbank_http_requests_total counter
ztbank_http_requests_total{method="GET",route="/boom",status="502"} 1
ztbank_http_requests_total{method="GET",route="/v1/accounts/{accountID}",status="403"} 2
ztbank_http_requests_total{method="GET",route="unmatched",status="404"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantMetrics), MetricHTTPRequests); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, MetricHTTPDuration); n != 3 {
		t.Errorf("%s has %d series, want 3 (one per route and method)", MetricHTTPDuration, n)
	}
}

func TestServerTwiceSharesMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, tp := inMemory(t)
	a := Server(WithTracerProvider(tp), WithRegisterer(reg))
	b := Server(WithTracerProvider(tp), WithRegisterer(reg)) // a second router in one process must not panic
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	a(ok).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	b(ok).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	const want = `
# HELP ztbank_http_requests_total HTTP requests served on the API port, by chi route pattern, method and status.
# TYPE ztbank_http_requests_total counter
ztbank_http_requests_total{method="GET",route="unmatched",status="200"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), MetricHTTPRequests); err != nil {
		t.Errorf("two routers in one process should share one series: %v", err)
	}
}

// TestPropagationAcrossHop runs two services' worth of middleware over a real HTTP hop: the
// upstream handler calls downstream with an Outgoing client, and the downstream server
// span must join the upstream trace as the client span's child.
func TestPropagationAcrossHop(t *testing.T) {
	exp, tp := inMemory(t)
	opts := []Option{WithTracerProvider(tp), WithPropagator(w3c), WithRegisterer(prometheus.NewRegistry())}

	var sawTraceparent bool
	down := chi.NewRouter()
	down.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sawTraceparent = r.Header.Get("Traceparent") != ""
			next.ServeHTTP(w, r)
		})
	}, Server(opts...), identify(false), Annotate)
	down.Get("/internal/chain", func(w http.ResponseWriter, r *http.Request) {})
	downSrv := httptest.NewServer(down)
	defer downSrv.Close()

	client := &http.Client{Transport: Outgoing("bank-a/user", opts...)(http.DefaultTransport)}
	up := chi.NewRouter()
	up.Use(Server(opts...), identify(true), Annotate)
	up.Get("/internal/chain", func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, downSrv.URL+"/internal/chain", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	})
	up.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/internal/chain", nil))

	spans := exp.GetSpans()
	byKind := map[trace.SpanKind][]tracetest.SpanStub{}
	for _, s := range spans {
		byKind[s.SpanKind] = append(byKind[s.SpanKind], s)
	}
	if len(byKind[trace.SpanKindServer]) != 2 || len(byKind[trace.SpanKindClient]) != 1 {
		t.Fatalf("got spans %v, want two server spans and one client span", spanNames(spans))
	}
	if !sawTraceparent {
		t.Error("downstream request had no traceparent header")
	}
	client1 := byKind[trace.SpanKindClient][0]
	var upSpan, downSpan tracetest.SpanStub
	for _, s := range byKind[trace.SpanKindServer] {
		if s.Parent.IsRemote() {
			downSpan = s
		} else {
			upSpan = s
		}
	}
	if downSpan.SpanContext.TraceID() != upSpan.SpanContext.TraceID() {
		t.Errorf("downstream trace %s, want upstream trace %s", downSpan.SpanContext.TraceID(), upSpan.SpanContext.TraceID())
	}
	if downSpan.Parent.SpanID() != client1.SpanContext.SpanID() {
		t.Errorf("downstream span's parent %s, want the client span %s", downSpan.Parent.SpanID(), client1.SpanContext.SpanID())
	}
	if client1.Parent.SpanID() != upSpan.SpanContext.SpanID() {
		t.Errorf("client span's parent %s, want the upstream server span %s", client1.Parent.SpanID(), upSpan.SpanContext.SpanID())
	}
	if got := attrs(client1.Attributes)[AttrPeer]; got != "bank-a/user" {
		t.Errorf("client span %s = %q, want bank-a/user", AttrPeer, got)
	}
	if got := attrs(upSpan.Attributes)[AttrUser]; got != aliceID.String() {
		t.Errorf("upstream span %s = %q, want %s", AttrUser, got, aliceID)
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.SpanKind.String()+" "+s.Name)
	}
	return out
}

// TestPropagationWithTracingOff checks the promise Setup makes: with no collector a
// service still continues its caller's trace, gives its own hop a span ID for its logs,
// and names that span as the parent on its calls. A request without a caller trace gets
// a fresh trace ID.
func TestPropagationWithTracingOff(t *testing.T) {
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		name     string
		tp       trace.TracerProvider
		incoming string
	}{
		{"caller trace continued", noop.NewTracerProvider(), "00-" + callerTrace + "-" + callerSpan + "-01"},
		{"no caller trace", noop.NewTracerProvider(), ""},
		// What a service without a collector actually runs: the global provider before
		// anything is installed.
		{"global provider, caller trace continued", otel.GetTracerProvider(), "00-" + callerTrace + "-" + callerSpan + "-01"},
		{"global provider, no caller trace", otel.GetTracerProvider(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var forwarded string
			down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				forwarded = r.Header.Get("Traceparent")
			}))
			defer down.Close()
			opts := []Option{WithPropagator(w3c), WithRegisterer(prometheus.NewRegistry()),
				WithTracerProvider(tc.tp)}
			client := &http.Client{Transport: Outgoing("bank-a/user", opts...)(nil)}
			var seen trace.SpanContext
			h := Server(opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = trace.SpanContextFromContext(r.Context())
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, down.URL, nil)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.incoming != "" {
				req.Header.Set("Traceparent", tc.incoming)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)

			if !seen.IsValid() {
				t.Fatal("handler context has no trace and span ID for its log lines")
			}
			if tc.incoming != "" && seen.TraceID().String() != callerTrace {
				t.Errorf("trace ID %s, want the caller's %s", seen.TraceID(), callerTrace)
			}
			if seen.SpanID().String() == callerSpan {
				t.Error("this hop reuses the caller's span ID; its log lines would be indistinguishable")
			}
			want := "00-" + seen.TraceID().String() + "-" + seen.SpanID().String() + "-01"
			if forwarded != want {
				t.Errorf("forwarded traceparent %q, want %q", forwarded, want)
			}
		})
	}
}

func TestOperation(t *testing.T) {
	for sql, want := range map[string]string{
		"select 1":                             "SELECT",
		"  INSERT INTO entries VALUES ($1)":    "INSERT",
		"with x as (select 1) select * from x": "WITH",
		"":                                     "SQL",
		"-- comment\nselect 1":                 "SQL",
		"ALTER ROLE app PASSWORD 'x'":          "ALTER",
	} {
		if got := operation(sql); got != want {
			t.Errorf("operation(%q) = %q, want %q", sql, got, want)
		}
	}
}

// TestServeMuxPattern checks that spans and metrics of a plain net/http ServeMux (the edge's)
// are named by the pattern it matched, not "unmatched".
func TestServeMuxPattern(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("/bank-a/", func(http.ResponseWriter, *http.Request) {})
	h := Server(WithTracerProvider(tp), WithRegisterer(prometheus.NewRegistry()))(mux)
	for _, path := range []string{"/.well-known/jwks.json", "/bank-a/v1/users/me"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	var got []string
	for _, s := range exp.GetSpans() {
		got = append(got, s.Name)
	}
	if diff := cmp.Diff([]string{"GET /.well-known/jwks.json", "GET /bank-a/"}, got); diff != "" {
		t.Errorf("span names mismatch (-want +got):\n%s", diff)
	}
}
