package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/topology"
)

// RouteInfo is one route a workload serves and what its Require demands, as the running
// service publishes it (server.RoutePermissionMetric).
type RouteInfo struct {
	Method     string   `json:"method"`
	Route      string   `json:"route"`
	Permission string   `json:"permission"`
	From       []string `json:"from,omitempty"`
}

// WorkloadRoutes is one workload's published route table, or why it could not be read.
type WorkloadRoutes struct {
	Routes []RouteInfo `json:"routes"`
	Error  string      `json:"error,omitempty"`
}

// routeCache reads the route tables from the services themselves: they are the single
// source (each walks its own router at start-up), so the console cannot show a permission
// the code does not demand. Tables change only when a service restarts; a few seconds of
// caching keeps hovering cheap.
type routeCache struct {
	topo   *topology.Topology
	health map[string]string
	client *http.Client

	mu      sync.Mutex
	fetched time.Time
	value   map[string]WorkloadRoutes
}

func newRouteCache(topo *topology.Topology, health map[string]string) *routeCache {
	return &routeCache{topo: topo, health: health, client: &http.Client{Timeout: 3 * time.Second}}
}

const routeCacheFor = 5 * time.Second

func (rc *routeCache) get(ctx context.Context) map[string]WorkloadRoutes {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.value != nil && time.Since(rc.fetched) < routeCacheFor {
		return rc.value
	}
	out := map[string]WorkloadRoutes{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range rc.topo.Workloads {
		addr := rc.health[w.Name]
		if addr == "" {
			msg := "not running locally"
			if w.External {
				msg = "external: not run locally, so it publishes no routes here"
			}
			// Under mu: scrapes started for earlier workloads are writing out already
			// (a -race run of make test caught this write unguarded).
			mu.Lock()
			out[w.Name] = WorkloadRoutes{Routes: []RouteInfo{}, Error: msg}
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(name, addr string) {
			defer wg.Done()
			routes, err := rc.scrape(ctx, addr)
			wr := WorkloadRoutes{Routes: routes}
			if err != nil {
				wr = WorkloadRoutes{Routes: []RouteInfo{}, Error: err.Error()}
			}
			mu.Lock()
			out[name] = wr
			mu.Unlock()
		}(w.Name, addr)
	}
	wg.Wait()
	rc.value, rc.fetched = out, time.Now()
	return out
}

func (rc *routeCache) scrape(ctx context.Context, addr string) ([]RouteInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := rc.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// A service without a Require-walkable router (the edge's ServeMux) publishes its routes
	// only, without the permission and from labels; they are shown without a permission.
	fam, ok := fams[server.RoutePermissionMetric]
	if !ok {
		fam = fams[server.RouteInfoMetric] // nil when neither is published: no routes
	}
	out := []RouteInfo{}
	for _, m := range fam.GetMetric() {
		var r RouteInfo
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "method":
				r.Method = l.GetValue()
			case "route":
				r.Route = l.GetValue()
			case "permission":
				r.Permission = l.GetValue()
			case "from":
				if v := l.GetValue(); v != "" {
					r.From = strings.Split(v, ",")
				}
			}
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b RouteInfo) int {
		if c := strings.Compare(a.Route, b.Route); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return out, nil
}
