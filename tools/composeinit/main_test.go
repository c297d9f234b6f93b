package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/devkit/devoidc"
	"github.com/ztbank/ztbank/libs/topology"
)

// volumes makes the directories the compose file mounts for init-secrets.
func volumes(t *testing.T, topo *topology.Topology) string {
	t.Helper()
	out := t.TempDir()
	dirs := []string{publicDir, edgeDir, devCADir, pgCADir, edgeConfDir}
	for _, tn := range topo.Tenants {
		dirs = append(dirs, pgDir(tn.Name), adminDir(tn.Name))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func secretsRun(t *testing.T, out string) (string, error) {
	t.Helper()
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"composeinit", "secrets", "-out", out}, func(string) string { return "" }, &stdout, &bytes.Buffer{})
	return stdout.String(), err
}

// TestSecrets: the PostgreSQL certificates verify for their own cluster's name only, the
// passfile carries the superuser password, and a second run keeps everything.
func TestSecrets(t *testing.T) {
	topo := topology.Default()
	out := volumes(t, topo)
	if _, err := secretsRun(t, out); err != nil {
		t.Fatal(err)
	}
	// The edge's enrolment table is the development provider's, for its demo users.
	want, err := devoidc.EnrolmentTable(devoidc.DemoUsers())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, edgeConfDir, devoidc.EnrolmentFile))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("enrolment table mismatch (-want +got):\n%s", diff)
	}
	roots := x509.NewCertPool()
	ca, err := readCert(filepath.Join(out, publicDir, pgCAFile))
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(ca)
	for _, tn := range topo.Tenants {
		leaf, err := readCert(filepath.Join(out, pgDir(tn.Name), "server.crt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, other := range topo.Tenants {
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: PostgresHost(other.Name)})
			if (err == nil) != (other.Name == tn.Name) {
				t.Errorf("%s's certificate verifies for %s: %v", tn.Name, PostgresHost(other.Name), err)
			}
		}
		pw, err := os.ReadFile(filepath.Join(out, pgDir(tn.Name), superPWFile))
		if err != nil {
			t.Fatal(err)
		}
		pass, err := os.ReadFile(filepath.Join(out, adminDir(tn.Name), pgPassFile))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff("*:*:*:postgres:"+string(pw)+"\n", string(pass)); diff != "" {
			t.Errorf("%s passfile mismatch (-want +got):\n%s", tn.Name, diff)
		}
	}
	// The PostgreSQL CA may sign only the clusters' names, even with its key leaked.
	var hosts []string
	for _, tn := range topo.Tenants {
		hosts = append(hosts, PostgresHost(tn.Name))
	}
	if diff := cmp.Diff(hosts, ca.PermittedDNSDomains); diff != "" {
		t.Errorf("PostgreSQL CA constraints mismatch (-want +got):\n%s", diff)
	}

	snapshot := func() map[string]string {
		m := map[string]string{}
		filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				b, _ := os.ReadFile(p)
				m[strings.TrimPrefix(p, out)] = string(b)
			}
			return nil
		})
		return m
	}
	first := snapshot()
	msg, err := secretsRun(t, out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, snapshot()); diff != "" {
		t.Errorf("a second run changed secrets (-first +second):\n%s\noutput: %s", diff, msg)
	}
}

// TestSecretsMissingVolume: a volume the compose file forgot is named in the error.
func TestSecretsMissingVolume(t *testing.T) {
	out := volumes(t, topology.Default())
	if err := os.RemoveAll(filepath.Join(out, pgDir("bank-b"))); err != nil {
		t.Fatal(err)
	}
	_, err := secretsRun(t, out)
	if err == nil || !strings.Contains(err.Error(), pgDir("bank-b")) {
		t.Fatalf("secrets without the %s volume: %v", pgDir("bank-b"), err)
	}
}

// TestEntries: one entry per workload the stack runs, each selected by its own container
// label alone and parented to the compose node alias.
func TestEntries(t *testing.T) {
	topo := topology.Default()
	alias := spiffeid.RequireFromPath(topo.TrustDomain, NodeAlias)
	type row struct{ ID, Parent, Selector string }
	var got []row
	for _, e := range Entries(topo, alias, time.Hour) {
		if len(e.Selectors) != 1 || e.X509SvidTtl != 3600 {
			t.Errorf("entry %s: %d selectors, ttl %d", idString(e.SpiffeId), len(e.Selectors), e.X509SvidTtl)
		}
		got = append(got, row{idString(e.SpiffeId), idString(e.ParentId), e.Selectors[0].Type + ":" + e.Selectors[0].Value})
	}
	var want []row
	for _, w := range topo.Workloads {
		if !w.External {
			want = append(want, row{w.ID.String(), alias.String(), "docker:label:org.ztbank.workload:" + w.Name})
		}
	}
	// The edge and at least a gateway per tenant, so the comparison below is never of
	// two empty lists (the count itself follows the topology: make tenant adds to it).
	if len(want) < 1+len(topo.Tenants) {
		t.Fatalf("topology has %d local workloads for %d tenants", len(want), len(topo.Tenants))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries mismatch (-want +got):\n%s", diff)
	}
}

// TestFresh: the rotator's healthcheck passes for new files and fails for old or missing ones.
func TestFresh(t *testing.T) {
	dir := t.TempDir()
	newFile, oldFile := filepath.Join(dir, "new"), filepath.Join(dir, "old")
	for _, f := range []string{newFile, oldFile} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(oldFile, past, past); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		files []string
		ok    bool
	}{
		{[]string{newFile}, true},
		{[]string{newFile, oldFile}, false},
		{[]string{filepath.Join(dir, "missing")}, false},
	} {
		err := fresh(append([]string{"-max-age", "10m"}, tc.files...), &bytes.Buffer{})
		if (err == nil) != tc.ok {
			t.Errorf("fresh %v = %v, want ok=%v", tc.files, err, tc.ok)
		}
	}
}
