// Package compose loads docker-compose.yml with compose-go (the loader Docker Compose itself
// uses, schema validation included) and checks the project: every service has a Dockerfile or
// an image, a healthcheck, dependencies on services that exist, and every topology workload
// runs in one service carrying the container label its SPIRE entry selects (composeinit
// registers docker:label:org.ztbank.workload:<workload> for each).
package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/ztbank/ztbank/libs/topology"
)

// Load parses the compose file at path the way `docker compose config` would, offline: no
// .env, no OS environment, so the result does not depend on the machine.
func Load(ctx context.Context, path string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithName("ztbank"),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, fmt.Errorf("compose options: %w", err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return p, nil
}

// oneShot services run to completion; they have nothing to healthcheck.
func oneShot(p *types.Project, name string) bool {
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			if dep == name && d.Condition == types.ServiceConditionCompletedSuccessfully {
				return true
			}
		}
	}
	return false
}

// WorkloadLabel is the label the compose SPIRE entries select on (tools/composeinit).
const WorkloadLabel = "org.ztbank.workload"

// Check returns every problem in the project.
func Check(p *types.Project, t *topology.Topology) []error {
	var errs []error
	for name, s := range p.Services {
		if s.Build == nil && s.Image == "" {
			errs = append(errs, fmt.Errorf("service %s has neither build nor image", name))
		}
		if s.Build != nil {
			df := s.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			if _, err := os.Stat(df); err != nil {
				errs = append(errs, fmt.Errorf("service %s: Dockerfile %s does not exist", name, df))
			}
		}
		if s.Image != "" && !strings.Contains(s.Image, "@") {
			_, tag, ok := strings.Cut(s.Image[strings.LastIndex(s.Image, "/")+1:], ":")
			if !ok || tag == "latest" {
				errs = append(errs, fmt.Errorf("service %s: image %s needs a pinned tag", name, s.Image))
			}
		}
		if (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0) && !oneShot(p, name) {
			errs = append(errs, fmt.Errorf("service %s has no healthcheck", name))
		}
		for dep := range s.DependsOn {
			if _, err := p.GetService(dep); err != nil {
				errs = append(errs, fmt.Errorf("service %s depends on unknown service %s", name, dep))
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind && !strings.HasPrefix(v.Source, "/var/run/docker.sock") {
				if _, err := os.Stat(v.Source); err != nil {
					errs = append(errs, fmt.Errorf("service %s mounts %s, which does not exist", name, v.Source))
				}
			}
		}
	}

	// Every topology workload: a service with its ZTBANK_WORKLOAD, direct mode, and the label
	// its SPIRE entry selects; no label names a workload twice or one outside the topology.
	labelled := map[string]string{}
	for _, s := range p.Services {
		v, ok := s.Labels[WorkloadLabel]
		if !ok {
			continue
		}
		if other, dup := labelled[v]; dup && !replicas(p, other, s.Name) {
			errs = append(errs, fmt.Errorf("services %s and %s both carry %s=%s", other, s.Name, WorkloadLabel, v))
		}
		labelled[v] = s.Name
		if w, ok := t.Workload(v); !ok || w.External {
			errs = append(errs, fmt.Errorf("service %s is labelled %s=%s, which is no workload compose runs", s.Name, WorkloadLabel, v))
		}
	}
	for _, w := range t.Workloads {
		if w.External {
			continue // Emissary-ingress runs only in Kubernetes; compose uses the edge's proxy
		}
		var svc *types.ServiceConfig
		for _, s := range p.Services {
			if v := s.Environment["ZTBANK_WORKLOAD"]; v != nil && *v == w.Name {
				if svc != nil && !replicas(p, svc.Name, s.Name) {
					errs = append(errs, fmt.Errorf("workload %s runs in two services", w.Name))
				}
				s := s
				svc = &s
				// Every replica must be in direct mode and carry the label its SVID needs.
				if m := svc.Environment["ZTBANK_TRANSPORT_MODE"]; m == nil || *m != "direct" {
					errs = append(errs, fmt.Errorf("service %s is not in direct mTLS mode", svc.Name))
				}
				if got := svc.Labels[WorkloadLabel]; got != w.Name {
					errs = append(errs, fmt.Errorf("service %s (%s) is labelled %s=%q, so it gets no SPIFFE ID or another workload's", svc.Name, w.Name, WorkloadLabel, got))
				}
			}
		}
		if svc == nil {
			errs = append(errs, fmt.Errorf("workload %s has no compose service", w.Name))
		}
	}
	return errs
}

// replicas reports whether services a and b are replicas of one workload (ADR 0985: edge-2
// runs the edge's image in the edge's network namespace). Any other pair of services sharing
// a workload would be two identities' worth of containers behind one SPIFFE ID.
func replicas(p *types.Project, a, b string) bool {
	sa, errA := p.GetService(a)
	sb, errB := p.GetService(b)
	if errA != nil || errB != nil || sa.Image != sb.Image {
		return false
	}
	return sa.NetworkMode == "service:"+b || sb.NetworkMode == "service:"+a
}
