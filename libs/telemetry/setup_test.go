package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr bool
	}{
		{"no collector named", nil, Config{}, false},
		{"base endpoint gets the HTTP signal path",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"},
			Config{Exporter: "otlp", Protocol: "http/protobuf", Endpoint: "http://127.0.0.1:4318/v1/traces"}, false},
		{"traces endpoint used as given",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/custom"},
			Config{Exporter: "otlp", Protocol: "http/protobuf", Endpoint: "http://b:4318/custom"}, false},
		{"grpc endpoint has no path",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			Config{Exporter: "otlp", Protocol: "grpc", Endpoint: "http://c:4317"}, false},
		{"exporter none wins over an endpoint",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, Config{}, false},
		{"SDK disabled wins over an endpoint",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "TRUE"}, Config{}, false},
		{"unsupported exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, Config{}, true},
		{"unsupported protocol",
			map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, Config{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConfig(envOf(tc.env))
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseConfig() error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseConfig() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// otlpReceiver is a real OTLP/HTTP trace endpoint that hands each decoded export request
// to the test.
func otlpReceiver(t *testing.T) (*httptest.Server, <-chan *collectortrace.ExportTraceServiceRequest) {
	t.Helper()
	got := make(chan *collectortrace.ExportTraceServiceRequest, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- &req
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestSetupOffWithoutCollector(t *testing.T) {
	shutdown, err := Setup(context.Background(), "ledger", "bank-a/ledger", envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	if _, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider); ok {
		t.Fatal("Setup without OTEL_EXPORTER_OTLP_ENDPOINT installed an SDK tracer provider; want tracing off")
	}
	_, span := otel.Tracer("t").Start(context.Background(), "x")
	if span.IsRecording() {
		t.Error("span is recording with tracing off")
	}
	span.End()
	if otel.GetTextMapPropagator().Fields() == nil {
		t.Error("no propagator installed: trace context would not pass through a service without a collector")
	}
}

func TestSetupExportsToCollector(t *testing.T) {
	srv, got := otlpReceiver(t)
	shutdown, err := Setup(context.Background(), "ledger", "bank-a/ledger",
		envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	_, span := otel.Tracer("t").Start(context.Background(), "post entry")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil { // flushes the batch
		t.Fatal(err)
	}
	select {
	case req := <-got:
		rs := req.GetResourceSpans()
		if len(rs) == 0 || len(rs[0].GetScopeSpans()) == 0 {
			t.Fatalf("export request has no spans: %v", req)
		}
		res := map[string]string{}
		for _, kv := range rs[0].GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		if res["service.name"] != "ledger" || res[AttrWorkload] != "bank-a/ledger" {
			t.Errorf("resource service.name=%q %s=%q, want ledger and bank-a/ledger", res["service.name"], AttrWorkload, res[AttrWorkload])
		}
		if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "post entry" {
			t.Errorf("span name %q, want %q", name, "post entry")
		}
	case <-ctx.Done():
		t.Fatal("no export request reached the collector")
	}
}
