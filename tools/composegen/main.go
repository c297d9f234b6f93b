// Command composegen writes the local-stack files that name every tenant from the topology
// (libs/topology/topology.yaml), so `make tenant NEW=…` then `make tenant-regen` gives a new
// tenant its compose services and observability entries with no hand edit (ADR 0955):
//
//   - docker-compose.yml, whole, from compose.yml.tmpl beside this file: each tenant's
//     PostgreSQL, networks, secret and password volumes, migrate/seed/dbcreds steps and one
//     service per workload labelled org.ztbank.workload;
//   - in deploy/images/images.json, the composeinit image's dirs (one mount point per volume
//     init-secrets mounts), since tools/images bakes them into the image;
//   - in deploy/observability/prometheus/prometheus.yml, the static scrape targets;
//   - in deploy/observability/falco/ztbank_rules.yaml, the ztbank_namespaces list.
//
// The last three files are hand-written around the generated part; composegen rewrites only
// that part and fails if it cannot find it. With -check it writes nothing and fails when a
// committed file differs from what it would write.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"github.com/ztbank/ztbank/libs/cli"
	"github.com/ztbank/ztbank/libs/topology"
)

func main() { cli.Main("composegen", run) }

// Paths of the files composegen writes, relative to the repository root.
const (
	ComposeFile    = "docker-compose.yml"
	ImagesFile     = "deploy/images/images.json"
	PrometheusFile = "deploy/observability/prometheus/prometheus.yml"
	FalcoFile      = "deploy/observability/falco/ztbank_rules.yaml"
)

// Files lists the generated paths in a fixed order.
var Files = []string{ComposeFile, ImagesFile, PrometheusFile, FalcoFile}

func run(_ context.Context, args []string, _ func(string) string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("composegen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	root := fs.String("root", ".", "repository `root`")
	topoPath := fs.String("topology", "", "topology `file` (default: the one compiled into libs/topology)")
	check := fs.Bool("check", false, "write nothing; fail if a committed file is not what would be written")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w (usage: composegen [-root DIR] [-topology FILE] [-check])", err)
	}
	if fs.NArg() > 0 {
		return errors.New("usage: composegen [-root DIR] [-topology FILE] [-check]")
	}
	topo := topology.Default()
	if *topoPath != "" {
		var err error
		if topo, err = topology.Load(*topoPath); err != nil {
			return err
		}
	}
	out, err := Generate(*root, topo)
	if err != nil {
		return err
	}
	var stale []string
	for _, f := range Files {
		p := filepath.Join(*root, f)
		old, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if bytes.Equal(old, out[f]) {
			continue
		}
		if *check {
			stale = append(stale, f)
			continue
		}
		if err := os.WriteFile(p, out[f], 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f, err)
		}
		fmt.Fprintf(stdout, "composegen: wrote %s\n", f)
	}
	if len(stale) > 0 {
		return fmt.Errorf("not generated from the topology (run make tenant-regen): %s", strings.Join(stale, ", "))
	}
	return nil
}

// Generate returns the content of every file in Files for topo, splicing the generated parts
// into the hand-written files under root.
func Generate(root string, topo *topology.Topology) (map[string][]byte, error) {
	m := model(topo)
	out := map[string][]byte{}
	compose, err := renderCompose(m)
	if err != nil {
		return nil, err
	}
	out[ComposeFile] = compose
	for _, s := range []struct {
		file   string
		splice func([]byte, composeModel) ([]byte, error)
	}{
		{ImagesFile, spliceImages},
		{PrometheusFile, splicePrometheus},
		{FalcoFile, spliceFalco},
	} {
		b, err := os.ReadFile(filepath.Join(root, s.file))
		if err != nil {
			return nil, err
		}
		if out[s.file], err = s.splice(b, m); err != nil {
			return nil, fmt.Errorf("%s: %w", s.file, err)
		}
	}
	return out, nil
}

//go:embed compose.yml.tmpl
var composeTemplate string

// composeModel is what the template sees: the topology's tenants with their local workloads,
// and the volume lists that span tenants.
type composeModel struct {
	PlatformNamespace string
	Tenants           []tenantModel
	Platform          []topology.Workload // runnable platform workloads (the edge)
	// InitVolumes are the volumes init-secrets writes (and so owns), in mount order.
	InitVolumes []string
	// Volumes are every named volume of the stack.
	Volumes []string
}

type tenantModel struct {
	topology.Tenant
	Workloads   []workloadModel
	DBWorkloads []workloadModel
}

type workloadModel struct {
	topology.Workload
}

// ComposeName is the workload's compose service, <tenant>-<service> (tools/composeinit's
// ServiceName, which stack.json and the suites use to find it).
func (w workloadModel) ComposeName() string { return w.Tenant + "-" + w.Service }

// PWVolume holds the workload's rotating database password; only it and the tenant's
// dbcreds rotator mount it.
func (w workloadModel) PWVolume() string { return "pw-" + w.Tenant + "-" + w.Service }

// PGHost is the tenant PostgreSQL's alias on the tenant's database network, the host name
// its server certificate carries (tools/composeinit.PostgresHost).
func (t tenantModel) PGHost() string { return "postgres." + t.Name }

// AdminDSN reaches the tenant's cluster as the superuser through the passfile init-secrets
// writes, so the password is in no DSN, variable or command line.
func (t tenantModel) AdminDSN() string {
	return "host=" + t.PGHost() + " port=5432 dbname=postgres user=postgres sslmode=verify-full sslrootcert=/run/ztbank/pki/pg-ca.pem passfile=/run/ztbank/admin/pgpass"
}

func model(topo *topology.Topology) composeModel {
	m := composeModel{PlatformNamespace: topo.PlatformNamespace}
	for _, w := range topo.Workloads {
		if w.Tenant == "" && !w.External {
			m.Platform = append(m.Platform, w)
		}
	}
	for _, t := range topo.Tenants {
		tm := tenantModel{Tenant: t}
		for _, w := range topo.Workloads {
			if w.Tenant != t.Name || w.External {
				continue
			}
			tm.Workloads = append(tm.Workloads, workloadModel{w})
			if w.DBRole != "" {
				tm.DBWorkloads = append(tm.DBWorkloads, workloadModel{w})
			}
		}
		m.Tenants = append(m.Tenants, tm)
	}
	perTenant := func(f func(string) string) []string {
		var out []string
		for _, t := range m.Tenants {
			out = append(out, f(t.Name))
		}
		return out
	}
	var pw []string
	for _, t := range m.Tenants {
		for _, w := range t.DBWorkloads {
			pw = append(pw, w.PWVolume())
		}
	}
	pgSecrets := perTenant(func(t string) string { return "pg-" + t + "-secrets" })
	pgData := perTenant(func(t string) string { return "pg-" + t + "-data" })
	dbAdmin := perTenant(func(t string) string { return "db-admin-" + t })

	m.InitVolumes = concat([]string{"pki-public", "pki-edge", "pki-devca", "pki-pgca"}, pgSecrets, dbAdmin,
		[]string{"spire-admin", "spire-server-data", "spire-bootstrap", "oidc-state", "edge-config", "edge-keys"}, pw)
	m.Volumes = concat([]string{"pki-public", "pki-edge", "pki-devca", "pki-pgca"}, pgSecrets, pgData, dbAdmin,
		[]string{"spire-admin", "spire-server-data", "spire-bootstrap", "spire-agent-data", "spire-agent-socket", "oidc-state", "edge-config", "edge-keys"}, pw)
	return m
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// ruleWidth is the column the section rules in the compose file end at.
const ruleWidth = 94

func renderCompose(m composeModel) ([]byte, error) {
	tmpl, err := template.New("compose").Option("missingkey=error").Funcs(template.FuncMap{
		// rule draws a tenant's section heading, "---- <name> ----…", to the file's width.
		"rule": func(name string) string {
			s := "---- " + name + " "
			if n := ruleWidth - 4 - len(s); n > 0 {
				s += strings.Repeat("-", n)
			}
			return s
		},
	}).Parse(composeTemplate)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// The composeinit image's "dirs" in images.json: the mount points init-secrets mounts its
// volumes on, made in the image and owned by the non-root user.
var imagesDirs = regexp.MustCompile(`("image": "ztbank/composeinit:dev"[^\n]*?"dirs": )\[[^\]]*\]`)

func spliceImages(b []byte, m composeModel) ([]byte, error) {
	if len(imagesDirs.FindAllIndex(b, -1)) != 1 {
		return nil, errors.New(`no single composeinit image entry with "dirs" on one line`)
	}
	dirs := []string{strconv.Quote("/out")}
	for _, v := range m.InitVolumes {
		dirs = append(dirs, strconv.Quote("/out/"+v))
	}
	repl := "${1}[" + strings.ReplaceAll(strings.Join(dirs, ", "), "$", "$$") + "]"
	return imagesDirs.ReplaceAll(b, []byte(repl)), nil
}

// prometheusMarker opens the static target list; composegen owns everything after it.
const prometheusMarker = "  - job_name: ztbank\n    static_configs:\n"

func splicePrometheus(b []byte, m composeModel) ([]byte, error) {
	i := bytes.Index(b, []byte(prometheusMarker))
	if i < 0 || bytes.Count(b, []byte(prometheusMarker)) != 1 {
		return nil, fmt.Errorf("no single %q block to rewrite", strings.TrimSpace(prometheusMarker))
	}
	var buf bytes.Buffer
	buf.Write(b[:i+len(prometheusMarker)])
	target := func(ns, pod string, w topology.Workload) {
		fmt.Fprintf(&buf, "      - targets: [%q]\n", w.Health)
		fmt.Fprintf(&buf, "        labels: {namespace: %s, service: %s, job: %s, pod: %s, container: %s, endpoint: http-health}\n",
			ns, w.Service, w.Service, pod, w.Service)
	}
	for _, w := range m.Platform {
		target(m.PlatformNamespace, m.PlatformNamespace+"-"+w.Service, w)
	}
	for _, t := range m.Tenants {
		for _, w := range t.Workloads {
			target(t.Name, w.ComposeName(), w.Workload)
		}
	}
	return buf.Bytes(), nil
}

// falcoList is the namespace list the Falco rules scope every ztbank rule to.
var falcoList = regexp.MustCompile(`(?m)^(- list: ztbank_namespaces\n  items: )\[[^\]\n]*\]$`)

func spliceFalco(b []byte, m composeModel) ([]byte, error) {
	if len(falcoList.FindAllIndex(b, -1)) != 1 {
		return nil, errors.New("no single one-line ztbank_namespaces list")
	}
	var ns []string
	for _, t := range m.Tenants {
		ns = append(ns, t.Name)
	}
	ns = append(ns, m.PlatformNamespace)
	return falcoList.ReplaceAll(b, []byte("${1}["+strings.ReplaceAll(strings.Join(ns, ", "), "$", "$$")+"]")), nil
}
