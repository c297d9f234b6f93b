package topology

import (
	"slices"
	"strings"
)

// CatalogueEntry is one service a tenant may choose to run. The entries say what the
// services' code relies on: whom it calls and which callers its routes admit by role, so a
// tenant's chosen set is checked to be complete before any binary starts.
type CatalogueEntry struct {
	Service string
	// Needs are the services the tenant must also run when it runs this one: this service
	// calls them, or its routes admit them by role (authz.FromSameTenant) and would otherwise
	// name a workload that does not exist.
	Needs []string
	// Calls are the services of its own tenant this one must be allowed to call whenever the
	// tenant runs them: its handlers forward to them.
	Calls []string
}

// catalogue is the call graph of the five tenant services. The gateway fronts every backend
// its tenant runs; the user service opens and lists accounts through the account service,
// whose routes in turn admit the user service; the payment service posts to the ledger, whose
// postings route admits only the payment service.
var catalogue = []CatalogueEntry{
	{Service: "gateway", Calls: []string{"user", "account", "payment", "ledger"}},
	{Service: "user", Needs: []string{"account"}, Calls: []string{"account"}},
	{Service: "account", Needs: []string{"user"}},
	{Service: "payment", Needs: []string{"ledger"}, Calls: []string{"ledger"}},
	{Service: "ledger", Needs: []string{"payment"}},
}

// EntryService is the tenant service every tenant runs: the platform reaches a tenant only
// through it.
const EntryService = "gateway"

// EdgeWorkload is the platform workload that fronts every tenant; when the topology has it,
// it must be allowed to call each tenant's entry service.
const EdgeWorkload = "edge"

// Catalogue returns the services a tenant chooses from, in catalogue order.
func Catalogue() []CatalogueEntry {
	out := make([]CatalogueEntry, len(catalogue))
	for i, e := range catalogue {
		out[i] = CatalogueEntry{Service: e.Service, Needs: slices.Clone(e.Needs), Calls: slices.Clone(e.Calls)}
	}
	return out
}

func catalogueEntry(service string) (CatalogueEntry, bool) {
	i := slices.IndexFunc(catalogue, func(e CatalogueEntry) bool { return e.Service == service })
	if i < 0 {
		return CatalogueEntry{}, false
	}
	return catalogue[i], true
}

func catalogueNames() string {
	names := make([]string, len(catalogue))
	for i, e := range catalogue {
		names[i] = e.Service
	}
	return strings.Join(names, ", ")
}

// checkCatalogue validates each tenant's chosen services against the catalogue: only
// catalogue services, a gateway and something behind it, every needed service present, and
// every call the services' code makes allowed. Errors name the line to fix.
func checkCatalogue(t *Topology, f fileTopology, bad func(line int, format string, args ...any) error) error {
	for _, ft := range f.Tenants {
		var runs []string
		for _, w := range t.Workloads {
			if w.Tenant == ft.Name {
				runs = append(runs, w.Service)
			}
		}
		switch {
		case !slices.Contains(runs, EntryService):
			return bad(ft.line, "tenant %q runs no %s, the only way into a tenant: add workload %q", ft.Name, EntryService, ft.Name+"/"+EntryService)
		case len(runs) == 1:
			return bad(ft.line, "tenant %q runs only a %s: choose its services from the catalogue (%s)", ft.Name, EntryService, catalogueNames())
		}
	}
	edge, hasEdge := t.byName[EdgeWorkload]
	for _, w := range t.Workloads {
		if w.Tenant == "" {
			continue
		}
		entry, ok := catalogueEntry(w.Service)
		if !ok {
			return bad(w.line, "workload %q: service %q is not in the tenant catalogue (%s)", w.Name, w.Service, catalogueNames())
		}
		for _, need := range entry.Needs {
			if _, ok := t.TenantWorkload(w.Tenant, need); !ok {
				return bad(w.line, "tenant %q runs %s but not %s, which %s needs: add workload %q", w.Tenant, w.Service, need, w.Service, w.Tenant+"/"+need)
			}
		}
	}
	// Calls second: a missing service is the more useful error than the call to it.
	for _, w := range t.Workloads {
		entry, ok := catalogueEntry(w.Service)
		if w.Tenant == "" || !ok {
			continue
		}
		for _, callee := range entry.Calls {
			c, ok := t.TenantWorkload(w.Tenant, callee)
			if ok && !slices.Contains(w.Calls, c.Name) {
				return bad(w.line, "workload %q must be allowed to call %q: the catalogue's %s calls its tenant's %s", w.Name, c.Name, w.Service, callee)
			}
		}
		if w.Service == EntryService && hasEdge && !slices.Contains(edge.Calls, w.Name) {
			return bad(edge.line, "workload %q must call %q, tenant %s's way in", edge.Name, w.Name, w.Tenant)
		}
	}
	return nil
}
