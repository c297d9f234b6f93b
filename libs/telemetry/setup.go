// Package telemetry is the platform's tracing and request metrics: one OpenTelemetry tracer
// provider per process, configured by the standard OTEL_* environment variables and off
// when no collector is named; server middleware that opens a span per request and counts
// it; a client wrapper that carries W3C trace context to the next hop over mTLS; and a
// pgx tracer for database spans. Spans carry the identities the platform proved (caller
// workload, user, tenant) and the authorisation decision, never tokens or secrets.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ScopeName is the instrumentation scope of every span this package starts.
const ScopeName = "github.com/ztbank/ztbank/libs/telemetry"

// Config is what Setup decided from the environment; Exporter is empty when tracing is off.
type Config struct {
	Exporter string // "otlp" or "" (off)
	Protocol string // "http/protobuf" or "grpc"
	Endpoint string // full URL the exporter sends to
}

// ParseConfig reads the standard OTEL_* variables. Tracing is on only when an OTLP endpoint
// is named: a service started without a collector must not spend time on spans or log
// export errors every few seconds.
func ParseConfig(getenv func(string) string) (Config, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return Config{}, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return Config{}, nil
	case "", "otlp":
	default:
		return Config{}, fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp or none", exp)
	}
	proto := firstSet(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	switch proto {
	case "":
		proto = "http/protobuf"
	case "http/protobuf", "grpc":
	default:
		return Config{}, fmt.Errorf("OTLP protocol %q: want http/protobuf or grpc", proto)
	}
	c := Config{Exporter: "otlp", Protocol: proto}
	if ep := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); ep != "" {
		c.Endpoint = ep // signal-specific endpoints are used as given
	} else if ep := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); ep != "" {
		c.Endpoint = ep
		if proto == "http/protobuf" {
			// The base endpoint names the collector; the HTTP signal path is appended.
			c.Endpoint = strings.TrimSuffix(ep, "/") + "/v1/traces"
		}
	} else {
		return Config{}, nil
	}
	return c, nil
}

func firstSet(getenv func(string) string, keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return ""
}

// Setup installs the process's propagator and, when the environment names an OTLP
// collector, a batching tracer provider exporting to it. The W3C tracecontext and baggage
// propagator is installed either way, so a service without a collector still passes its
// caller's trace context on to the next hop and its log lines keep the caller's trace ID.
// The returned shutdown flushes buffered spans; it is safe to call when tracing is off.
func Setup(ctx context.Context, service, workload string, getenv func(string) string) (shutdown func(context.Context) error, err error) {
	s, err := Load(getenv)
	if err != nil {
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
		return func(context.Context) error { return nil }, err
	}
	return Start(ctx, s, service, workload)
}

func start(ctx context.Context, cfg Config, serviceName, service, workload string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func(context.Context) error { return nil }
	if cfg.Exporter == "" {
		return noop, nil
	}
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return noop, fmt.Errorf("OTLP trace exporter for %s: %w", cfg.Endpoint, err)
	}
	name := service
	if serviceName != "" {
		name = serviceName
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost(),
		resource.WithAttributes(attribute.String("service.name", name), attribute.String(AttrWorkload, workload)))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return noop, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// newExporter builds the exporter for cfg. Headers, TLS and timeouts still come from the
// standard variables, which the exporters read themselves.
func newExporter(ctx context.Context, cfg Config) (*otlptrace.Exporter, error) {
	if cfg.Protocol == "grpc" {
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	}
	return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint))
}
