package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ztbank/ztbank/libs/topology"
)

// Healthcheck is a binary's `healthcheck` subcommand: distroless images have no shell or
// curl, so the container probe asks the process's own plain health port for /readyz. The
// address is ZTBANK_HEALTH_LISTEN or, failing that, the workload's topology address.
func Healthcheck(ctx context.Context, getenv func(string) string, workload string) error {
	addr := getenv("ZTBANK_HEALTH_LISTEN")
	if addr == "" {
		if w := getenv("ZTBANK_WORKLOAD"); w != "" {
			workload = w
		}
		topo, err := topology.Load(getenv("ZTBANK_TOPOLOGY"))
		if err != nil {
			return err
		}
		w, ok := topo.Workload(workload)
		if !ok {
			return fmt.Errorf("healthcheck: workload %q is not in the topology (set ZTBANK_WORKLOAD)", workload)
		}
		addr = w.Health
	}
	return HealthcheckAddr(ctx, addr)
}

// HealthcheckAddr asks the health listener at addr (":9090" means this host) for /readyz.
func HealthcheckAddr(ctx context.Context, addr string) error {
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s", resp.Status)
	}
	return nil
}
