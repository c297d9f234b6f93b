package main

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ztbank/ztbank/libs/topology"
)

// The topology is edited as text, not re-marshalled: its comments are documentation, and a
// removal must give back the bytes the addition started from.

// schemaOf names the schema (and migration) of each catalogue service that keeps data; a
// service not listed (the gateway) has no database role.
var schemaOf = map[string]string{"user": "users", "account": "accounts", "ledger": "ledger", "payment": "payments"}

// reservedPorts are fixed ports of the local stack that are not in the topology: the dev
// OIDC provider, the observability tools and PostgreSQL (devkit/localports lists them).
var reservedPorts = []int{4317, 4318, 5432, 9090, 9443, 9900, 16686}

// roleName is a new tenant's login role for service: tenant-qualified, because roles are
// cluster-wide and the local stack runs one cluster for every tenant.
func roleName(database, service string) string { return database + "_" + service + "_svc" }

// addToTopology returns src with tenant name (database db) running services: its tenant
// entry after the last tenant, the platform workloads that call every tenant's gateway
// (the edge, the ingress) also calling its gateway, and its workloads appended at the end
// on ports no workload uses.
func addToTopology(src []byte, topo *topology.Topology, name, db string, services []string) ([]byte, error) {
	lines := strings.SplitAfter(string(src), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	// The tenant entry goes after the last line of the tenants list.
	start := slices.Index(lines, "tenants:\n")
	if start < 0 {
		return nil, fmt.Errorf("%s: no top-level tenants: list", topologyFile)
	}
	end := start + 1
	for end < len(lines) && (strings.HasPrefix(lines[end], "  - ") || strings.HasPrefix(lines[end], "    ")) {
		end++
	}
	lines = slices.Insert(lines, end, "  - name: "+name+"\n", "    database: "+db+"\n")

	// Whoever calls every existing tenant's entry service calls the new one's too.
	gateway := name + "/" + topology.EntryService
	for _, w := range topo.Workloads {
		if w.Tenant != "" || !slices.Contains(services, topology.EntryService) || !callsEveryEntry(topo, w) {
			continue
		}
		i, err := callsLine(lines, w.Name)
		if err != nil {
			return nil, err
		}
		items := parseFlowList(lines[i])
		lines[i] = "    calls: [" + strings.Join(append(items, gateway), ", ") + "]\n"
	}

	listen, health, err := freePorts(topo, len(services))
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(strings.Join(lines, ""))
	// Workloads of one tenant form one group: a blank line before it, none inside.
	b.WriteString("\n")
	for i, s := range services {
		fmt.Fprintf(&b, "  - name: %s/%s\n    tenant: %s\n    service: %s\n    listen: 127.0.0.1:%d\n    health: 127.0.0.1:%d\n",
			name, s, name, s, listen[i], health[i])
		if _, ok := schemaOf[s]; ok {
			fmt.Fprintf(&b, "    database_role: %s\n", roleName(db, s))
		}
		var calls []string
		for _, e := range topology.Catalogue() {
			if e.Service != s {
				continue
			}
			for _, c := range e.Calls {
				if slices.Contains(services, c) {
					calls = append(calls, name+"/"+c)
				}
			}
		}
		if len(calls) > 0 {
			fmt.Fprintf(&b, "    calls: [%s]\n", strings.Join(calls, ", "))
		}
	}
	return []byte(b.String()), nil
}

// callsEveryEntry reports whether platform workload w calls the entry service of every
// tenant (and there is at least one).
func callsEveryEntry(topo *topology.Topology, w topology.Workload) bool {
	if len(topo.Tenants) == 0 {
		return false
	}
	for _, t := range topo.Tenants {
		e, ok := topo.TenantWorkload(t.Name, topology.EntryService)
		if !ok || !slices.Contains(w.Calls, e.Name) {
			return false
		}
	}
	return true
}

var flowList = regexp.MustCompile(`^    calls: \[(.*)\]\n$`)

// callsLine finds the line index of workload name's one-line calls list.
func callsLine(lines []string, name string) (int, error) {
	i := slices.Index(lines, "  - name: "+name+"\n")
	if i < 0 {
		return 0, fmt.Errorf("%s: workload %q is not written as \"  - name: %s\"", topologyFile, name, name)
	}
	for j := i + 1; j < len(lines) && !strings.HasPrefix(lines[j], "  - "); j++ {
		if flowList.MatchString(lines[j]) {
			return j, nil
		}
	}
	return 0, fmt.Errorf("%s: workload %q has no one-line calls: [...] list to edit", topologyFile, name)
}

func parseFlowList(line string) []string {
	m := flowList.FindStringSubmatch(line)
	if m == nil || strings.TrimSpace(m[1]) == "" {
		return nil
	}
	items := strings.Split(m[1], ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
	}
	return items
}

// freePorts picks n listen and n health ports for a new tenant: the next free hundred
// above the tenants' listen ports and the next free ten above their health ports (the
// layout bank-a and bank-b use: 85xx/94x0s, 86xx/941x), skipping any port in use.
func freePorts(topo *topology.Topology, n int) (listen, health []int, err error) {
	used := map[int]bool{}
	for _, p := range reservedPorts {
		used[p] = true
	}
	maxListen, maxHealth := 0, 0
	for _, w := range topo.Workloads {
		for _, addr := range []string{w.Listen, w.Health, w.Public} {
			if addr == "" {
				continue
			}
			_, ps, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, nil, fmt.Errorf("workload %s: %w", w.Name, err)
			}
			p, err := strconv.Atoi(ps)
			if err != nil {
				return nil, nil, fmt.Errorf("workload %s: port %q: %w", w.Name, ps, err)
			}
			used[p] = true
		}
		if w.Tenant != "" {
			maxListen = max(maxListen, portOf(w.Listen))
			maxHealth = max(maxHealth, portOf(w.Health))
		}
	}
	pick := func(base, step int) ([]int, error) {
		for ; base+step <= 65535; base += step {
			var ps []int
			for i := 1; i <= n && base+i < base+step; i++ {
				if !used[base+i] {
					ps = append(ps, base+i)
				}
			}
			if len(ps) == n {
				return ps, nil
			}
		}
		return nil, fmt.Errorf("no %d free ports above %d", n, base)
	}
	if listen, err = pick(maxListen/100*100+100, 100); err != nil {
		return nil, nil, err
	}
	if health, err = pick(maxHealth/10*10+10, 10); err != nil {
		return nil, nil, err
	}
	return listen, health, nil
}

func portOf(addr string) int {
	_, ps, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(ps)
	return p
}

// removeFromTopology undoes addToTopology: the tenant entry, the tenant's name in other
// workloads' calls lists, and the tenant's group of workloads with the blank line before it.
func removeFromTopology(src []byte, topo *topology.Topology, name string) ([]byte, error) {
	t, _ := topo.Tenant(name)
	entry := "  - name: " + name + "\n    database: " + t.Database + "\n"
	if bytes.Count(src, []byte(entry)) != 1 {
		return nil, fmt.Errorf("%s: tenant %s is not written as make tenant writes it (name, database); remove it by hand", topologyFile, name)
	}
	s := strings.Replace(string(src), entry, "", 1)
	lines := strings.SplitAfter(s, "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.HasPrefix(l, "  - name: "+name+"/") {
			// Skip the workload's block; drop a blank line just before the tenant's group.
			if n := len(out); n > 0 && out[n-1] == "\n" {
				out = out[:n-1]
			}
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    ") {
				i++
			}
			continue
		}
		if flowList.MatchString(l) {
			items := slices.DeleteFunc(parseFlowList(l), func(c string) bool { return strings.HasPrefix(c, name+"/") })
			l = "    calls: [" + strings.Join(items, ", ") + "]\n"
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "")), nil
}
