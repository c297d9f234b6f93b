package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ztbank/ztbank/libs/topology"
)

var numericUser = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)

// TestEveryImage: each image of the list exists, runs as a numeric non-root user, carries its
// inputs hash, and started as compose and the manifests start it — read-only root, every
// capability dropped, no network — its `healthcheck` against nothing fails with one clear
// line rather than a crash.
func TestEveryImage(t *testing.T) {
	requireImages(t)
	list, err := loadList("../..")
	if err != nil {
		t.Fatal(err)
	}
	probes := healthProbes(t)
	for _, im := range list {
		t.Run(im.Name(), func(t *testing.T) {
			if im.Optional {
				if _, err := dockerCmd(context.Background(), "image", "inspect", im.Image); err != nil {
					t.Skipf("SKIPPED: %s is optional and not built (images build %s)", im.Image, im.Name())
				}
			}
			var cfg []struct {
				Config struct {
					User       string
					Entrypoint []string
					Labels     map[string]string
				}
			}
			if err := json.Unmarshal([]byte(mustDocker(t, "image", "inspect", im.Image)), &cfg); err != nil || len(cfg) != 1 {
				t.Fatalf("inspect %s: %v (run `make images`)", im.Image, err)
			}
			c := cfg[0].Config
			m := numericUser.FindStringSubmatch(c.User)
			if m == nil {
				t.Fatalf("User = %q, want numeric uid:gid", c.User)
			}
			if uid, _ := strconv.Atoi(m[1]); uid == 0 {
				t.Errorf("User = %q: runs as root", c.User)
			}
			if gid, _ := strconv.Atoi(m[2]); gid == 0 {
				t.Errorf("User = %q: root group", c.User)
			}
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(c.Labels[inputsLabel]) {
				t.Errorf("label %s = %q, want the inputs hash", inputsLabel, c.Labels[inputsLabel])
			}
			if len(c.Entrypoint) == 0 || c.Entrypoint[0] != im.BinaryPath() {
				t.Errorf("Entrypoint = %q, want %s first", c.Entrypoint, im.BinaryPath())
			}

			if im.Build != "rootfs" {
				checkRoot(t, im)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := randomName(t, "ztbank-imgtest-"+im.Name())
			removeLater(t, "container", name)
			probe, ok := probes[im.Name()]
			if !ok {
				t.Fatalf("no healthcheck expectation for %s: add it to healthProbes", im.Name())
			}
			args := []string{"run", "--name", name, "--read-only", "--cap-drop", "ALL",
				"--security-opt", "no-new-privileges", "--network", "none"}
			for _, e := range probe.env {
				args = append(args, "-e", e)
			}
			args = append(args, "--entrypoint", im.BinaryPath(), im.Image, "healthcheck")
			out, err := dockerCmd(ctx, args...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("healthcheck against nothing: err = %v (want a non-zero exit)\n%s", err, out)
			}
			// 125-127 are docker's own failures (cannot start, not executable, not found);
			// 2 with a goroutine dump is a Go panic.
			if code := exit.ExitCode(); code >= 125 || code == 2 && strings.Contains(out, "goroutine ") {
				t.Fatalf("healthcheck did not run or crashed (exit %d):\n%s", code, out)
			}
			if probe.logs {
				if !probe.want.MatchString(out) {
					t.Errorf("output does not match %s:\n%s", probe.want, out)
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 1 && !probe.oneShot {
				t.Fatalf("healthcheck printed %d lines, want one:\n%s", len(lines), out)
			}
			if !probe.want.MatchString(lines[0]) {
				t.Errorf("healthcheck said %q, want it to match %s", lines[0], probe.want)
			}
		})
	}
}

type healthProbe struct {
	env  []string       // what compose would give, minus anything to talk to
	want *regexp.Regexp // the first (for services, only) line of output
	// oneShot images (jobs compose runs to completion) have no healthcheck subcommand; they
	// must still refuse it with a usage error rather than crash.
	oneShot bool
	// logs: a third-party program with no healthcheck subcommand that logs structured lines
	// (Kubernetes probes it over HTTP); want is matched against its whole output.
	logs bool
}

// healthProbes says, per image, how `healthcheck` is started as compose starts it and what it
// must say with nothing to answer: the services reach their health port and find it closed.
// Workloads come from the topology, as in production.
func healthProbes(t *testing.T) map[string]healthProbe {
	t.Helper()
	topo, err := topology.Load("")
	if err != nil {
		t.Fatal(err)
	}
	refused := regexp.MustCompile(`^[a-z]+: healthcheck: Get "http://127\.0\.0\.1:9090/readyz": dial tcp 127\.0\.0\.1:9090: connect: connection refused$`)
	// sslrootcert=system: the DSN must be verify-full and its CA readable, and the image's
	// CA bundle is what "system" reads.
	dsn := "host=127.0.0.1 port=5432 dbname=probe user=probe sslmode=verify-full sslrootcert=system"
	common := []string{
		"ZTBANK_TRANSPORT_MODE=direct",
		"SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/sockets/agent.sock",
		"ZTBANK_HEALTH_LISTEN=:9090",
	}
	probes := map[string]healthProbe{
		"devoidc":                  {want: regexp.MustCompile(`^devoidc: healthcheck: provider not ready: open .*provider\.json: no such file or directory$`)},
		"spire-server":             {want: regexp.MustCompile(`^Error: server is unhealthy: unable to determine health$`)},
		"spire-agent":              {want: regexp.MustCompile(`^Agent is unhealthy: unable to determine health$`)},
		"postgres":                 {want: regexp.MustCompile(`^pg-entrypoint: healthcheck: PostgreSQL on 127\.0\.0\.1:5432 is not accepting connections: no response$`)},
		"dbadmin":                  {oneShot: true, env: []string{"ZTBANK_DB_ADMIN_DSN=" + dsn}, want: regexp.MustCompile(`^dbadmin: usage: unknown subcommand "healthcheck"$`)},
		"spire-controller-manager": {logs: true, want: regexp.MustCompile(`ERROR\tsetup\terror parsing configuration\t\{"error": "trust domain is required configuration"\}`)},
		"composeinit":              {oneShot: true, want: regexp.MustCompile(`^composeinit: usage: unknown subcommand "healthcheck"`)},
	}
	for _, w := range topo.Workloads {
		if w.External {
			continue
		}
		env := append([]string{"ZTBANK_WORKLOAD=" + w.Name}, common...)
		if w.DBRole != "" {
			env = append(env, "ZTBANK_DB_DSN="+dsn, "ZTBANK_DB_AUTH=passwordfile", "ZTBANK_DB_PASSWORD_FILE=/run/ztbank/db/password")
		}
		if w.Public != "" {
			var issuers []string
			for _, tn := range topo.Tenants {
				issuers = append(issuers, tn.Name+"=https://127.0.0.1:9443")
			}
			env = append(env, "EDGE_TLS_CERT=/run/ztbank/edge/tls.crt", "EDGE_TLS_KEY=/run/ztbank/edge/tls.key",
				"EDGE_ISSUERS="+strings.Join(issuers, ","), "EDGE_ENROLMENT=claims")
		}
		probes[w.Service] = healthProbe{env: env, want: refused}
	}
	return probes
}

// exportFiles streams container cid's filesystem (docker export) and calls each with every
// entry's header and contents, in archive order.
func exportFiles(ctx context.Context, t *testing.T, cid string, each func(hdr *tar.Header, r io.Reader)) {
	t.Helper()
	export := exec.CommandContext(ctx, "docker", "export", cid)
	stdout, err := export.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := export.Start(); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(stdout)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		each(hdr, tr)
	}
	if err := export.Wait(); err != nil {
		t.Fatal(err)
	}
}

// checkRoot reads an image's /etc files and binary owner from a created (never started)
// container: the CA bundle holds the Mozilla set, passwd names the non-root user, and the
// binary belongs to root so the user cannot replace it.
func checkRoot(t *testing.T, im image) {
	t.Helper()
	cid := mustDocker(t, "create", im.Image)
	t.Cleanup(func() { dockerCmd(context.Background(), "rm", "-f", cid) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	files := map[string]*tar.Header{}
	contents := map[string]string{}
	exportFiles(ctx, t, cid, func(hdr *tar.Header, r io.Reader) {
		name := "/" + strings.TrimPrefix(hdr.Name, "./")
		files[strings.TrimSuffix(name, "/")] = hdr
		if strings.HasPrefix(name, "/etc/") && hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			contents[name] = string(b)
		}
	})
	if n := strings.Count(contents["/etc/ssl/certs/ca-certificates.crt"], "-----BEGIN CERTIFICATE-----"); n < 100 {
		t.Errorf("CA bundle holds %d certificates, want the Mozilla set (over 100)", n)
	}
	if !strings.Contains(contents["/etc/passwd"], "nonroot:x:65532:65532:") || !strings.Contains(contents["/etc/group"], "nonroot:x:65532:") {
		t.Errorf("/etc/passwd or /etc/group lacks nonroot 65532:\n%s%s", contents["/etc/passwd"], contents["/etc/group"])
	}
	bin, ok := files[im.BinaryPath()]
	if !ok {
		t.Fatalf("%s missing from the image", im.BinaryPath())
	}
	if bin.Uid != 0 || bin.Mode&0o022 != 0 {
		t.Errorf("%s: owner %d mode %o, want root-owned and not writable by others", im.BinaryPath(), bin.Uid, bin.Mode)
	}
	if tmp, ok := files["/tmp"]; !ok || tmp.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp missing or not sticky and world-writable")
	}
}
