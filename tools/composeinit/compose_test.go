package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/libs/topology"
)

type composeFile struct {
	Services map[string]struct {
		User        string            `yaml:"user"`
		ReadOnly    bool              `yaml:"read_only"`
		CapDrop     []string          `yaml:"cap_drop"`
		PullPolicy  string            `yaml:"pull_policy"`
		Image       string            `yaml:"image"`
		NetworkMode string            `yaml:"network_mode"`
		Labels      map[string]string `yaml:"labels"`
		Volumes     []string          `yaml:"volumes"`
		Networks    yaml.Node         `yaml:"networks"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func loadCompose(t *testing.T) (string, composeFile) {
	t.Helper()
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return root, f
}

// TestVolumeOwnership: every named volume that a 65532 container mounts writable is first
// mounted by init-secrets under /out/<volume>, and the composeinit image has exactly those
// mount points owned by 65532 (images.json dirs). A volume missed here would start owned by
// root and the service writing it would fail at start.
func TestVolumeOwnership(t *testing.T) {
	root, f := loadCompose(t)
	claimed := map[string]bool{}
	for _, v := range f.Services["init-secrets"].Volumes {
		name, target, _ := strings.Cut(v, ":")
		if target != "/out/"+name {
			t.Errorf("init-secrets mounts %s at %s, want /out/%s", name, target, name)
		}
		claimed[name] = true
	}
	for svc, s := range f.Services {
		if svc == "init-secrets" || s.User != "65532:65532" {
			continue
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if _, named := f.Volumes[parts[0]]; !named || (len(parts) > 2 && parts[2] == "ro") {
				continue
			}
			if !claimed[parts[0]] {
				t.Errorf("%s writes volume %s, which init-secrets does not claim for 65532", svc, parts[0])
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "images", "images.json"))
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Images []struct {
			Image string   `json:"image"`
			Dirs  []string `json:"dirs"`
		} `json:"images"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	want := []string{"/out"}
	for name := range claimed {
		want = append(want, "/out/"+name)
	}
	sort.Strings(want)
	i := slices.IndexFunc(list.Images, func(im struct {
		Image string   `json:"image"`
		Dirs  []string `json:"dirs"`
	}) bool {
		return im.Image == "ztbank/composeinit:dev"
	})
	if i < 0 {
		t.Fatal("images.json has no ztbank/composeinit:dev")
	}
	got := slices.Sorted(slices.Values(list.Images[i].Dirs))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("composeinit image mount points mismatch (-want +got):\n%s", diff)
	}
}

// TestWorkloadsInCompose: every workload composeinit registers runs in the service
// ServiceName names, labelled with its own name, and every tenant has the volumes the
// secrets step writes for it.
func TestWorkloadsInCompose(t *testing.T) {
	_, f := loadCompose(t)
	topo := topology.Default()
	for _, w := range topo.Workloads {
		if w.External {
			continue
		}
		s, ok := f.Services[ServiceName(w)]
		if !ok {
			t.Errorf("workload %s: no compose service %s", w.Name, ServiceName(w))
			continue
		}
		if got := s.Labels[WorkloadLabel]; got != w.Name {
			t.Errorf("service %s: label %s=%q, want %q", ServiceName(w), WorkloadLabel, got, w.Name)
		}
	}
	for _, tn := range topo.Tenants {
		for _, v := range []string{pgDir(tn.Name), adminDir(tn.Name)} {
			if _, ok := f.Volumes[v]; !ok {
				t.Errorf("tenant %s: compose declares no volume %s", tn.Name, v)
			}
		}
		if _, ok := f.Services["postgres-"+tn.Name]; !ok {
			t.Errorf("tenant %s has no postgres-%s service", tn.Name, tn.Name)
		}
	}
}

// TestPasswordVolumes: each service with a database role mounts its own password volume and
// no other; only its tenant's rotator mounts it besides (and init-secrets, which claims it).
func TestPasswordVolumes(t *testing.T) {
	_, f := loadCompose(t)
	mounts := map[string][]string{} // volume → services
	for svc, s := range f.Services {
		for _, v := range s.Volumes {
			name, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(name, "pw-") {
				mounts[name] = append(mounts[name], svc)
			}
		}
	}
	topo := topology.Default()
	n := 0
	for _, w := range topo.Workloads {
		if w.DBRole == "" {
			continue
		}
		n++
		vol := "pw-" + w.Tenant + "-" + w.Service
		got := slices.Sorted(slices.Values(mounts[vol]))
		want := slices.Sorted(slices.Values([]string{"init-secrets", w.Tenant + "-dbcreds", ServiceName(w)}))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s mounted by (-want +got):\n%s", vol, diff)
		}
		delete(mounts, vol)
	}
	if n == 0 || len(mounts) != 0 {
		t.Errorf("%d database workloads; password volumes of no workload: %v", n, mounts)
	}
}

// TestHardening: every container runs read-only with every capability dropped and is never
// pulled; all but the SPIRE agent run as a non-root user (ADR 0910 says why the agent is root).
func TestHardening(t *testing.T) {
	_, f := loadCompose(t)
	for name, s := range f.Services {
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || s.PullPolicy != "never" {
			t.Errorf("%s: read_only %v, cap_drop %v, pull_policy %q", name, s.ReadOnly, s.CapDrop, s.PullPolicy)
		}
		uid, _, _ := strings.Cut(s.User, ":")
		switch {
		case name == "spire-agent":
			if uid != "0" {
				t.Errorf("spire-agent runs as %q; ADR 0910 expects root", s.User)
			}
		case uid == "" || uid == "0" || uid == "root":
			t.Errorf("%s runs as %q, want a non-root uid", name, s.User)
		}
	}
}
