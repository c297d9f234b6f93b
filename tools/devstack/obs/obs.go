// Package obs starts the local observability backends for `make dev OBS=1`: Jaeger v2
// (built from the pinned Go tool module tools/jaeger) receiving OTLP traces, and
// Prometheus (the Debian package) scraping every service's health port with the alert
// rules from deploy/observability loaded. Services are pointed at Jaeger through the
// standard OTEL_* variables that Endpoints.Env returns.
package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ztbank/ztbank/devkit/atomicfile"
	"github.com/ztbank/ztbank/devkit/childproc"
	"github.com/ztbank/ztbank/devkit/localports"
	"github.com/ztbank/ztbank/devkit/localspire"
)

// Endpoints says where the started backends listen.
type Endpoints struct {
	OTLPHTTP   string // OTLP/HTTP receiver base URL, e.g. http://127.0.0.1:4318
	OTLPGRPC   string // OTLP/gRPC receiver address
	JaegerUI   string // Jaeger query UI URL
	Prometheus string // Prometheus URL
	// TargetsFile is the Prometheus file_sd file; SetTargets rewrites it.
	TargetsFile string
}

// Env is the environment that points a service's tracing at Jaeger.
func (e Endpoints) Env() []string {
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + e.OTLPHTTP, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"}
}

// Target is one service's plain health port, scraped for /metrics.
type Target struct {
	Workload  string // topology name, e.g. bank-a/gateway
	Namespace string // topology namespace: the tenant, or the platform namespace
	Service   string // topology service name, e.g. gateway
	Addr      string // host:port of the health listener
}

// TargetLabels are the labels a Prometheus Operator ServiceMonitor scrape gives a target
// (namespace, service, job = the Service's name, pod, container, endpoint = the port's name),
// so the dashboards and alert rules read the same labels locally and in a cluster (ADR 0975).
// A local process has no pod; namespace-service stands in.
func TargetLabels(t Target) map[string]string {
	return map[string]string{
		"namespace": t.Namespace,
		"service":   t.Service,
		"job":       t.Service,
		"pod":       t.Namespace + "-" + t.Service,
		"container": t.Service,
		"endpoint":  "http-health",
	}
}

// SetTargets replaces the scrape targets. Prometheus re-reads the file on its own, so the
// stack can start the backends first (services need the OTLP endpoint before they start)
// and name the targets once their ports are assigned.
func (e Endpoints) SetTargets(targets []Target) error {
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	groups := []group{}
	for _, t := range targets {
		groups = append(groups, group{Targets: []string{t.Addr}, Labels: TargetLabels(t)})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return err
	}
	// Prometheus must never read a half-written file.
	return atomicfile.Write(e.TargetsFile, b, 0o644)
}

// Option configures Start.
type Option func(*options)

type options struct {
	root       string
	jaegerBin  string
	promBin    string
	freePorts  bool
	progress   io.Writer
	noJaeger   bool
	noProm     bool
	readyAfter time.Duration
}

// WithRoot names the repository root (default: found from the working directory).
func WithRoot(dir string) Option { return func(o *options) { o.root = dir } }

// WithJaegerBinary uses an already built jaeger binary instead of building tools/jaeger.
func WithJaegerBinary(path string) Option { return func(o *options) { o.jaegerBin = path } }

// WithPrometheusBinary uses path instead of prometheus from PATH.
func WithPrometheusBinary(path string) Option { return func(o *options) { o.promBin = path } }

// WithFreePorts listens on free ports instead of the standard 4317/4318/16686/9090, so
// tests can run beside a developer's `make dev OBS=1`.
func WithFreePorts() Option { return func(o *options) { o.freePorts = true } }

// WithProgress reports build and start steps to w.
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w } }

// WithoutJaeger starts Prometheus only; WithoutPrometheus starts Jaeger only.
func WithoutJaeger() Option     { return func(o *options) { o.noJaeger = true } }
func WithoutPrometheus() Option { return func(o *options) { o.noProm = true } }

// Start builds what is missing and starts the backends with their state, configuration
// and logs under dir. stop terminates them; on error nothing is left running.
func Start(ctx context.Context, dir string, opts ...Option) (_ Endpoints, stop func(), err error) {
	o := options{progress: io.Discard, readyAfter: 60 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	if o.root == "" {
		if o.root, err = localspire.RepoRoot(); err != nil {
			return Endpoints{}, nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Endpoints{}, nil, err
	}
	ports := []int{4317, 4318, 16686, 9090, 13133}
	if o.freePorts {
		if ports, err = freePorts(len(ports)); err != nil {
			return Endpoints{}, nil, err
		}
	}
	ep := Endpoints{
		OTLPGRPC:    fmt.Sprintf("127.0.0.1:%d", ports[0]),
		OTLPHTTP:    fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		JaegerUI:    fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		Prometheus:  fmt.Sprintf("http://127.0.0.1:%d", ports[3]),
		TargetsFile: filepath.Join(dir, "targets.json"),
	}
	var procs []*childproc.Process
	stop = func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Go(func() { p.Stop(10 * time.Second) })
		}
		wg.Wait()
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()

	if !o.noJaeger {
		bin := o.jaegerBin
		if bin == "" {
			if bin, err = jaegerBinary(ctx, o.root, o.progress); err != nil {
				return ep, nil, err
			}
		}
		cfg := filepath.Join(dir, "jaeger.yaml")
		if err := os.WriteFile(cfg, []byte(jaegerConfig(ports)), 0o644); err != nil {
			return ep, nil, err
		}
		fmt.Fprintf(o.progress, "==> starting Jaeger (UI %s, OTLP %s)\n", ep.JaegerUI, ep.OTLPHTTP)
		p, err := childproc.Start(exec.Command(bin, "--config", cfg), filepath.Join(dir, "jaeger.log"), nil)
		if err != nil {
			return ep, nil, err
		}
		procs = append(procs, p)
		if err := p.WaitReady(ctx, o.readyAfter, childproc.Get(ep.JaegerUI+"/")); err != nil {
			return ep, nil, fmt.Errorf("jaeger: %w (log: %s)", err, filepath.Join(dir, "jaeger.log"))
		}
		// The UI answers before the OTLP receivers listen, and services send traces there:
		// Jaeger is ready when an (empty) OTLP/HTTP export is accepted.
		if err := p.WaitReady(ctx, o.readyAfter, func() (*http.Response, error) {
			return http.Post(ep.OTLPHTTP+"/v1/traces", "application/json", strings.NewReader("{}"))
		}); err != nil {
			return ep, nil, fmt.Errorf("jaeger's OTLP receiver: %w (log: %s)", err, filepath.Join(dir, "jaeger.log"))
		}
	}
	if !o.noProm {
		bin := o.promBin
		if bin == "" {
			if bin, err = exec.LookPath("prometheus"); err != nil {
				return ep, nil, errors.New("prometheus not found on PATH: install the Debian package (apt-get install -y --no-install-recommends prometheus)")
			}
		}
		if err := ep.SetTargets(nil); err != nil {
			return ep, nil, err
		}
		rules, err := os.ReadFile(filepath.Join(o.root, "deploy", "observability", "prometheus", "alerts.yml"))
		if err != nil {
			return ep, nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644); err != nil {
			return ep, nil, err
		}
		cfg := filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(cfg, []byte(prometheusConfig(ep.TargetsFile)), 0o644); err != nil {
			return ep, nil, err
		}
		fmt.Fprintf(o.progress, "==> starting Prometheus (%s)\n", ep.Prometheus)
		p, err := childproc.Start(exec.Command(bin, "--config.file="+cfg,
			"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"),
			"--web.listen-address="+strings.TrimPrefix(ep.Prometheus, "http://")), filepath.Join(dir, "prometheus.log"), nil)
		if err != nil {
			return ep, nil, err
		}
		procs = append(procs, p)
		if err := p.WaitReady(ctx, o.readyAfter, childproc.Get(ep.Prometheus+"/-/ready")); err != nil {
			return ep, nil, fmt.Errorf("prometheus: %w (log: %s)", err, filepath.Join(dir, "prometheus.log"))
		}
	}
	return ep, stop, nil
}

// jaegerBinary returns .dev/bin/jaeger, building it from tools/jaeger when missing. A cold
// build takes many minutes on two cores. ZTBANK_JAEGER_BIN overrides the path.
func jaegerBinary(ctx context.Context, root string, progress io.Writer) (string, error) {
	if p := os.Getenv("ZTBANK_JAEGER_BIN"); p != "" {
		return p, nil
	}
	bin := filepath.Join(root, ".dev", "bin", "jaeger")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(progress, "==> building Jaeger v1.76.0 into %s (first time: many minutes)\n", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = filepath.Join(root, "tools", "jaeger")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build Jaeger: %w", err)
	}
	return bin, nil
}

// jaegerConfig is deploy/observability/jaeger/config.yaml with this run's ports.
func jaegerConfig(ports []int) string {
	return fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[5]d
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%[3]d
    grpc:
      endpoint: 127.0.0.1:0
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[1]d
      http:
        endpoint: 127.0.0.1:%[2]d
processors:
  batch: {}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, ports[0], ports[1], ports[2], ports[3], ports[4])
}

// prometheusConfig scrapes the targets in targetsFile and loads alerts.yml beside it.
func prometheusConfig(targetsFile string) string {
	return fmt.Sprintf(`global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: ztbank
    file_sd_configs:
      - files: [%q]
        refresh_interval: 5s
`, targetsFile)
}

// freePorts reserves ports the way the rest of the local stack does (localports.Reserve), so
// a parallel test's stack cannot draw the same ones.
func freePorts(n int) ([]int, error) { return localports.Reserve(n) }
