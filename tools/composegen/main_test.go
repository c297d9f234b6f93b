package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/ztbank/ztbank/libs/topology"
)

var root = filepath.Join("..", "..")

// TestCommittedFilesAreGenerated keeps the committed files byte for byte what composegen
// writes from the committed topology: a hand edit to docker-compose.yml, or a topology change
// without make tenant-regen, fails here.
func TestCommittedFilesAreGenerated(t *testing.T) {
	out, err := Generate(root, topology.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Files {
		got, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(string(out[f]), string(got)); d != "" {
			t.Errorf("%s is not generated from the topology (run make tenant-regen); -generated +committed:\n%s", f, d)
		}
	}
}

// composeFile is the part of a compose file the fixture test looks at; yaml.v3 resolves the
// file's anchors and merge keys as Compose does.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Labels      map[string]string `yaml:"labels"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Networks    yaml.Node         `yaml:"networks"`
		DependsOn   yaml.Node         `yaml:"depends_on"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Networks map[string]struct {
		Internal bool `yaml:"internal"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
}

// keys returns the sorted names of a compose list-or-map field (networks, depends_on).
func keys(t *testing.T, n yaml.Node) []string {
	t.Helper()
	var out []string
	if n.Kind == yaml.AliasNode {
		n = *n.Alias
	}
	switch n.Kind {
	case 0:
	case yaml.SequenceNode:
		if err := n.Decode(&out); err != nil {
			t.Fatal(err)
		}
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for k := range m {
			out = append(out, k)
		}
	default:
		t.Fatalf("unexpected node kind %v", n.Kind)
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestThreeTenantFixture generates from a three-tenant topology whose tenants run different
// service sets and checks each tenant got its own database, networks, volumes and services,
// wired only to its own database.
func TestThreeTenantFixture(t *testing.T) {
	topo, err := topology.Load(filepath.Join("testdata", "three.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Generate(root, topo)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(out[ComposeFile], &c); err != nil {
		t.Fatalf("generated compose file does not parse: %v", err)
	}

	var services []string
	for name := range c.Services {
		services = append(services, name)
	}
	wantServices := []string{
		"devoidc", "edge", "edge-2", "init-secrets", "spire-agent", "spire-register", "spire-server",
		"postgres-t1", "t1-migrate", "t1-seed", "t1-dbcreds", "t1-gateway", "t1-user", "t1-account",
		"postgres-t2", "t2-migrate", "t2-seed", "t2-dbcreds", "t2-gateway", "t2-payment", "t2-ledger",
		"postgres-t3", "t3-migrate", "t3-seed", "t3-dbcreds", "t3-gateway", "t3-user", "t3-account", "t3-payment", "t3-ledger",
	}
	if d := cmp.Diff(sorted(wantServices), sorted(services)); d != "" {
		t.Errorf("services (-want +got):\n%s", d)
	}

	for _, tc := range []struct {
		service              string
		networks, dependsOn  []string
		label, image, dsn    string
		volumes, healthcheck []string
	}{
		{service: "edge", networks: []string{"t1", "t2", "t3"}, dependsOn: []string{"init-secrets", "spire-agent", "spire-register"},
			label: "edge", image: "ztbank/edge:dev"},
		{service: "postgres-t2", networks: []string{"t2-db"}, dependsOn: []string{"init-secrets"}, image: "ztbank/postgres:15",
			volumes: []string{"pg-t2-secrets:/run/ztbank/pg:ro", "pg-t2-data:/var/lib/postgresql/data"}},
		{service: "t3-seed", networks: []string{"t3-db"}, dependsOn: []string{"t3-migrate"}, image: "ztbank/dbadmin:dev",
			volumes: []string{"./migrations:/migrations:ro", "pki-public:/run/ztbank/pki:ro", "db-admin-t3:/run/ztbank/admin:ro"}},
		{service: "t1-gateway", networks: []string{"t1"}, dependsOn: []string{"spire-agent", "spire-register"},
			label: "t1/gateway", image: "ztbank/gateway:dev", volumes: []string{"spire-agent-socket:/run/spire/sockets:ro"}},
		{service: "t1-user", networks: []string{"t1", "t1-db"}, dependsOn: []string{"spire-agent", "spire-register", "t1-dbcreds"},
			label: "t1/user", image: "ztbank/user:dev",
			dsn:     "host=postgres.t1 port=5432 dbname=t1_db user=u_role sslmode=verify-full sslrootcert=/run/ztbank/pki/pg-ca.pem",
			volumes: []string{"spire-agent-socket:/run/spire/sockets:ro", "pki-public:/run/ztbank/pki:ro", "pw-t1-user:/run/ztbank/db:ro"}},
		{service: "t3-ledger", networks: []string{"t3", "t3-db"}, dependsOn: []string{"spire-agent", "spire-register", "t3-dbcreds"},
			label: "t3/ledger", image: "ztbank/ledger:dev",
			dsn:     "host=postgres.t3 port=5432 dbname=t3_db user=l_role sslmode=verify-full sslrootcert=/run/ztbank/pki/pg-ca.pem",
			volumes: []string{"spire-agent-socket:/run/spire/sockets:ro", "pki-public:/run/ztbank/pki:ro", "pw-t3-ledger:/run/ztbank/db:ro"}},
		{service: "t2-dbcreds", networks: []string{"t2-db"}, dependsOn: []string{"t2-seed"}, image: "ztbank/composeinit:dev",
			volumes: []string{"pki-public:/run/ztbank/pki:ro", "db-admin-t2:/run/ztbank/admin:ro",
				"pw-t2-payment:/run/ztbank/passwords/payment", "pw-t2-ledger:/run/ztbank/passwords/ledger"},
			healthcheck: []string{"CMD", "/app/composeinit", "fresh", "-max-age", "10m",
				"/run/ztbank/passwords/payment/password", "/run/ztbank/passwords/ledger/password"}},
	} {
		t.Run(tc.service, func(t *testing.T) {
			s, ok := c.Services[tc.service]
			if !ok {
				t.Fatal("no such service")
			}
			if d := cmp.Diff(tc.networks, keys(t, s.Networks)); d != "" {
				t.Errorf("networks (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.dependsOn, keys(t, s.DependsOn)); d != "" {
				t.Errorf("depends_on (-want +got):\n%s", d)
			}
			if got := s.Labels["org.ztbank.workload"]; got != tc.label {
				t.Errorf("label = %q, want %q", got, tc.label)
			}
			if s.Image != tc.image {
				t.Errorf("image = %q, want %q", s.Image, tc.image)
			}
			if got := s.Environment["ZTBANK_DB_DSN"]; got != tc.dsn {
				t.Errorf("ZTBANK_DB_DSN = %q, want %q", got, tc.dsn)
			}
			if tc.volumes != nil {
				if d := cmp.Diff(tc.volumes, s.Volumes); d != "" {
					t.Errorf("volumes (-want +got):\n%s", d)
				}
			}
			if tc.healthcheck != nil {
				if d := cmp.Diff(tc.healthcheck, s.Healthcheck.Test); d != "" {
					t.Errorf("healthcheck (-want +got):\n%s", d)
				}
			}
		})
	}

	internal := map[string]bool{}
	for name, n := range c.Networks {
		internal[name] = n.Internal
	}
	wantNets := map[string]bool{"spire": true, "t1": false, "t1-db": true, "t2": false, "t2-db": true, "t3": false, "t3-db": true}
	if d := cmp.Diff(wantNets, internal); d != "" {
		t.Errorf("networks: name -> internal (-want +got):\n%s", d)
	}

	// Every named volume a service mounts is declared, and every declared one is mounted.
	mounted := map[string]bool{}
	for _, s := range c.Services {
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				mounted[src] = true
			}
		}
	}
	declared := map[string]bool{}
	for v := range c.Volumes {
		declared[v] = true
	}
	if d := cmp.Diff(declared, mounted); d != "" {
		t.Errorf("declared volumes vs mounted ones (-declared +mounted):\n%s", d)
	}

	// composeinit's image has a mount point for each volume init-secrets mounts, no more.
	var images struct {
		Images []struct {
			Image string   `json:"image"`
			Dirs  []string `json:"dirs"`
		} `json:"images"`
	}
	if err := json.Unmarshal(out[ImagesFile], &images); err != nil {
		t.Fatalf("generated images.json: %v", err)
	}
	var dirs []string
	for _, im := range images.Images {
		if im.Image == "ztbank/composeinit:dev" {
			dirs = im.Dirs
		}
	}
	wantDirs := []string{"/out"}
	for _, v := range c.Services["init-secrets"].Volumes {
		src, dst, _ := strings.Cut(v, ":")
		if dst != "/out/"+src {
			t.Errorf("init-secrets mounts %s at %s, not /out/%s", src, dst, src)
		}
		wantDirs = append(wantDirs, dst)
	}
	if d := cmp.Diff(wantDirs, dirs); d != "" {
		t.Errorf("composeinit dirs (-want +got):\n%s", d)
	}
	for _, v := range []string{"pg-t3-secrets", "db-admin-t2", "pw-t3-ledger", "pw-t1-account"} {
		if !slices.Contains(dirs, "/out/"+v) {
			t.Errorf("composeinit dirs lack /out/%s", v)
		}
	}

	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(out[PrometheusFile], &prom); err != nil {
		t.Fatalf("generated prometheus.yml: %v", err)
	}
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets = append(targets, tg+" "+st.Labels["namespace"]+" "+st.Labels["pod"]+" "+st.Labels["job"])
			}
		}
	}
	wantTargets := []string{
		"127.0.0.1:7400 plat plat-edge edge",
		"127.0.0.1:7401 t1 t1-gateway gateway", "127.0.0.1:7402 t1 t1-user user", "127.0.0.1:7403 t1 t1-account account",
		"127.0.0.1:7411 t2 t2-gateway gateway", "127.0.0.1:7412 t2 t2-payment payment", "127.0.0.1:7413 t2 t2-ledger ledger",
		"127.0.0.1:7421 t3 t3-gateway gateway", "127.0.0.1:7422 t3 t3-user user", "127.0.0.1:7423 t3 t3-account account",
		"127.0.0.1:7424 t3 t3-payment payment", "127.0.0.1:7425 t3 t3-ledger ledger",
	}
	if d := cmp.Diff(wantTargets, targets); d != "" {
		t.Errorf("prometheus targets (-want +got):\n%s", d)
	}

	var falco []map[string]any
	if err := yaml.Unmarshal(out[FalcoFile], &falco); err != nil {
		t.Fatalf("generated falco rules: %v", err)
	}
	var ns any
	for _, item := range falco {
		if item["list"] == "ztbank_namespaces" {
			ns = item["items"]
		}
	}
	if d := cmp.Diff([]any{"t1", "t2", "t3", "plat"}, ns); d != "" {
		t.Errorf("falco ztbank_namespaces (-want +got):\n%s", d)
	}
}

// TestSpliceNeedsItsAnchor: a hand-written file whose generated part cannot be found is an
// error naming the file, never a file written without it.
func TestSpliceNeedsItsAnchor(t *testing.T) {
	dir := t.TempDir()
	for _, f := range Files[1:] {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ file, old, new string }{
		{ImagesFile, `"dirs": [`, `"dirz": [`},
		{PrometheusFile, "  - job_name: ztbank\n", "  - job_name: other\n"},
		{FalcoFile, "- list: ztbank_namespaces\n", "- list: other\n"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			p := filepath.Join(dir, tc.file)
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.WriteFile(p, orig, 0o644) })
			if !bytes.Contains(orig, []byte(tc.old)) {
				t.Fatalf("%s no longer contains %q; update this case", tc.file, tc.old)
			}
			if err := os.WriteFile(p, bytes.Replace(orig, []byte(tc.old), []byte(tc.new), 1), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Generate(dir, topology.Default())
			if err == nil || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("Generate = %v, want an error naming %s", err, tc.file)
			}
		})
	}
}

// TestRunCheck: -check fails naming a stale file and writes nothing; without -check the
// file is rewritten, after which -check passes.
func TestRunCheck(t *testing.T) {
	dir := t.TempDir()
	for _, f := range Files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if f == ComposeFile {
			b = append(b, "# hand edit\n"...)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	err := run(ctx, []string{"composegen", "-root", dir, "-check"}, os.Getenv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), ComposeFile) {
		t.Fatalf("run -check = %v, want an error naming %s", err, ComposeFile)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ComposeFile)); !bytes.HasSuffix(b, []byte("# hand edit\n")) {
		t.Fatal("run -check rewrote the file")
	}
	if err := run(ctx, []string{"composegen", "-root", dir}, os.Getenv, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"composegen", "-root", dir, "-check"}, os.Getenv, io.Discard, io.Discard); err != nil {
		t.Fatalf("after regenerating, run -check = %v", err)
	}
	if err := run(ctx, []string{"composegen", "-root", dir, "extra"}, os.Getenv, io.Discard, io.Discard); err == nil {
		t.Error("run with a stray argument succeeded")
	}
}
