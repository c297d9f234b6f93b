package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/topology"
)

// servedRoutes is what each running service's router serves, keyed by workload name.
type servedRoutes map[string][]server.Route

// servedFromTable is the route table the suite's own tables describe: ServiceRoutes, the
// edge's tenant proxy prefixes and EdgeRoutes. Offline tests use it as the served set: the live
// run proves it equal to what the routers serve.
func servedFromTable(topo *topology.Topology, rows []ServiceRoute, edge []EdgeRoute) servedRoutes {
	out := servedRoutes{}
	for _, r := range rows {
		out[r.Workload] = append(out[r.Workload], server.Route{Method: r.Method, Pattern: r.Pattern})
	}
	for _, t := range topo.Tenants {
		out["edge"] = append(out["edge"], server.Route{Method: "*", Pattern: "/" + t.Name + "/"})
	}
	for _, r := range edge {
		out["edge"] = append(out["edge"], server.Route{Method: r.Method, Pattern: r.Pattern})
	}
	return out
}

// coverage lists every way the cases fall short of the served routes: a served route with no
// row in ServiceRoutes, a row nothing serves, a route not called directly by every workload's
// SVID, a user route never called with a user's token, a gateway route never called through
// the edge. Deleting any row of either route table makes it report that route.
func coverage(topo *topology.Topology, calls map[string][]string, served servedRoutes, cases []Case) []string {
	type key struct{ workload, method, pattern string }
	direct := map[key]map[string]bool{} // callers that call the route without a token
	withToken := map[key]int{}
	front := map[key]int{}
	frontTenants := map[string]int{}
	edgeCalls := map[key]int{}
	rows := map[key]bool{}
	// The edge forwards a tenant's front-door route to the tenant's workload it may call.
	fronted := map[string]string{}
	for _, w := range topo.Workloads {
		if mayCall(calls, "edge", w.Name) {
			fronted[w.Tenant] = w.Name
		}
	}
	for _, c := range cases {
		if c.Edge != nil {
			edgeCalls[key{"edge", c.EdgeRoute.Method, c.EdgeRoute.Pattern}]++
			continue
		}
		if !c.Direct {
			front[key{fronted[c.Route.Tenant], c.Route.Method, c.Route.Path}]++
			frontTenants[c.Route.Tenant]++
			continue
		}
		k := key{c.Served.Workload, c.Served.Method, c.Served.Pattern}
		rows[k] = true
		if c.Call != nil {
			withToken[k]++
			continue
		}
		if direct[k] == nil {
			direct[k] = map[string]bool{}
		}
		direct[k][c.Identity.Workload.Name] = true
	}
	var problems []string
	for _, w := range topo.Workloads {
		for _, r := range served[w.Name] {
			k := key{w.Name, r.Method, r.Pattern}
			name := w.Name + " " + r.String()
			if _, isTenant := topo.Tenant(strings.Trim(r.Pattern, "/")); w.Name == "edge" && r.Method == "*" && isTenant {
				if frontTenants[strings.Trim(r.Pattern, "/")] == 0 {
					problems = append(problems, name+": the edge proxies this tenant, but no front-door case calls it (add rows to Routes)")
				}
				continue
			}
			if edgeCalls[k] > 0 {
				continue
			}
			if !rows[k] {
				problems = append(problems, name+": served, but no case calls it (add a row to ServiceRoutes)")
				continue
			}
			for _, caller := range topo.Workloads {
				if !direct[k][caller.Name] {
					problems = append(problems, fmt.Sprintf("%s: never called with %s's SVID", name, caller.Name))
				}
			}
			var row ServiceRoute
			for _, c := range cases {
				if c.Served != nil && (key{c.Served.Workload, c.Served.Method, c.Served.Pattern}) == k {
					row = *c.Served
					break
				}
			}
			if !row.WorkloadOnly && withToken[k] == 0 {
				problems = append(problems, name+": needs a user, but no case sends a user's token")
			}
			if mayCall(calls, "edge", w.Name) && front[k] == 0 {
				problems = append(problems, name+": the edge fronts it, but no case calls it through the edge (add a row to Routes)")
			}
		}
	}
	for k := range edgeCalls {
		rows[k] = true
	}
	for k := range rows {
		if !slices.Contains(served[k.workload], server.Route{Method: k.method, Pattern: k.pattern}) {
			problems = append(problems, fmt.Sprintf("%s %s %s: ServiceRoutes has a row, but the service does not serve it", k.workload, k.method, k.pattern))
		}
	}
	sort.Strings(problems)
	return problems
}

// scrapeServed reads every running tenant service's published route table
// (libs/server.RouteInfoMetric) from its health port.
func (d *deployment) scrapeServed(ctx context.Context) (servedRoutes, error) {
	out := servedRoutes{}
	for _, w := range topo.Workloads {
		if w.External {
			continue // the ingress is not ours to run
		}
		fams, err := d.scrape(ctx, w.Name)
		if err != nil {
			return nil, err
		}
		fam, ok := fams[server.RouteInfoMetric]
		if !ok || len(fam.GetMetric()) == 0 {
			return nil, fmt.Errorf("%s publishes no %s: is it running this commit's libs/server?", w.Name, server.RouteInfoMetric)
		}
		for _, m := range fam.GetMetric() {
			var r server.Route
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "method":
					r.Method = l.GetValue()
				case "route":
					r.Pattern = l.GetValue()
				}
			}
			out[w.Name] = append(out[w.Name], r)
		}
	}
	return out, nil
}

// handshakeRefusals reads each tenant service's count of handshakes its allowlist refused.
func (d *deployment) handshakeRefusals(ctx context.Context) (map[string]float64, error) {
	out := map[string]float64{}
	for _, w := range topo.Workloads {
		if w.Tenant == "" {
			continue
		}
		fams, err := d.scrape(ctx, w.Name)
		if err != nil {
			return nil, err
		}
		for _, m := range fams["ztbank_mtls_handshake_failures_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == "not_allowed" {
					out[w.Name] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out, nil
}

func (d *deployment) scrape(ctx context.Context, workload string) (map[string]*dto.MetricFamily, error) {
	addr := d.health[workload]
	if addr == "" {
		return nil, fmt.Errorf("%s: the deployment gives no health address to read its metrics from", workload)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", workload, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s metrics: status %d", workload, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", workload, err)
	}
	return fams, nil
}

// describe renders served routes for a failure message.
func (s servedRoutes) describe(workload string) string {
	var parts []string
	for _, r := range s[workload] {
		parts = append(parts, r.String())
	}
	return strings.Join(parts, ", ")
}
