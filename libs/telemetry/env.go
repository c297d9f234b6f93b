package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ztbank/ztbank/libs/envvar"
)

// Vars declares the OTEL_* variables a service reads. The first group is read by ParseConfig;
// the second is read by the OpenTelemetry SDK itself from the process environment, and the
// loader reads (and where it can, checks) them too so that a bad value is a start-up error
// rather than a silent fallback, and so the deploy contract knows they are consumed.
var Vars = []envvar.Var{
	{Name: "OTEL_SDK_DISABLED", Default: "false", Doc: "true turns tracing off whatever else is set."},
	{Name: "OTEL_TRACES_EXPORTER", Default: "otlp", Doc: "otlp or none."},
	{Name: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Default: "OTEL_EXPORTER_OTLP_PROTOCOL", Doc: "http/protobuf or grpc, for traces only."},
	{Name: "OTEL_EXPORTER_OTLP_PROTOCOL", Default: "http/protobuf", Doc: "http/protobuf or grpc."},
	{Name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Default: "OTEL_EXPORTER_OTLP_ENDPOINT", Doc: "full URL spans are sent to, used as given."},
	{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Default: "tracing off", Doc: "the collector's base URL (/v1/traces is appended for http/protobuf); tracing is on only when an endpoint is named."},
	{Name: "OTEL_SERVICE_NAME", Default: "the binary's name", Doc: "service.name of every span."},
	{Name: "OTEL_RESOURCE_ATTRIBUTES", Doc: "extra resource attributes, key=value pairs (read by the SDK)."},
	{Name: "OTEL_TRACES_SAMPLER", Default: "parentbased_always_on", Doc: "sampler name, checked at start-up (read by the SDK)."},
	{Name: "OTEL_TRACES_SAMPLER_ARG", Default: "1.0", Doc: "ratio in [0,1] for the traceidratio samplers (read by the SDK)."},
	{Name: "OTEL_EXPORTER_OTLP_HEADERS", Doc: "headers sent to the collector, key=value pairs (read by the SDK)."},
	{Name: "OTEL_EXPORTER_OTLP_TIMEOUT", Default: "10000", Doc: "export timeout in milliseconds (read by the SDK)."},
}

// Settings is the tracing configuration a service starts with.
type Settings struct {
	Config
	ServiceName string // OTEL_SERVICE_NAME; empty means the binary's name
}

var samplers = []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// Load reads Settings and checks the variables the SDK reads by itself. Errors are one line
// naming the variable.
func Load(getenv func(string) string) (Settings, error) {
	c, err := ParseConfig(getenv)
	if err != nil {
		return Settings{}, err
	}
	// The service's identity is read and checked whether or not spans leave the process: a
	// deployment names it once, and a malformed one is wrong either way.
	s := Settings{Config: c, ServiceName: getenv("OTEL_SERVICE_NAME")}
	if attrs := getenv("OTEL_RESOURCE_ATTRIBUTES"); attrs != "" {
		for _, kv := range strings.Split(attrs, ",") {
			if k, _, ok := strings.Cut(kv, "="); !ok || strings.TrimSpace(k) == "" {
				return Settings{}, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES %q: want key=value pairs separated by commas", attrs)
			}
		}
	}
	if c.Exporter == "" {
		// Tracing is off: the exporter's and sampler's settings are not consumed, so they are
		// not read (a deployment that sets them is told so by the contract test).
		return s, nil
	}
	getenv("OTEL_EXPORTER_OTLP_HEADERS")
	if v := getenv("OTEL_EXPORTER_OTLP_TIMEOUT"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			return Settings{}, fmt.Errorf("OTEL_EXPORTER_OTLP_TIMEOUT %q: want a positive number of milliseconds", v)
		}
	}
	sampler := getenv("OTEL_TRACES_SAMPLER")
	if sampler != "" && !contains(samplers, sampler) {
		return Settings{}, fmt.Errorf("OTEL_TRACES_SAMPLER %q: want one of %s", sampler, strings.Join(samplers, ", "))
	}
	if arg := getenv("OTEL_TRACES_SAMPLER_ARG"); arg != "" {
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return Settings{}, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q: want a ratio between 0 and 1", arg)
		}
	}
	return s, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Start is Setup for settings already loaded.
func Start(ctx context.Context, s Settings, service, workload string) (shutdown func(context.Context) error, err error) {
	return start(ctx, s.Config, s.ServiceName, service, workload)
}
