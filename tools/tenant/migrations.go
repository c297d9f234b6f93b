package main

import (
	"bytes"
	"embed"
	"fmt"
	"strings"
	"text/template"

	"github.com/ztbank/ztbank/libs/topology"
)

// The migration templates are the reference tenants' migrations with the tenant and the
// role written as placeholders; TestTemplatesRenderReferenceMigrations renders them for
// bank-a and bank-b and requires the committed files byte for byte, so a schema change made
// in one place and not the other fails.
//
//go:embed migrations/*.tmpl
var migrationTemplates embed.FS

// schemaOrder is the order of a tenant database's schema migrations after 0001_database:
// the ledger before payments (payments name ledger accounts), users before accounts.
var schemaOrder = []string{"users", "accounts", "ledger", "payments"}

type migrationFile struct {
	name string
	data []byte
}

// renderMigrations returns the migrations of tenant's database for the services the
// topology gives it: 0001_database (only its roles may connect), then one migration per
// schema, numbered in schemaOrder.
func renderMigrations(topo *topology.Topology, tenant string) ([]migrationFile, error) {
	t, ok := topo.Tenant(tenant)
	if !ok {
		return nil, fmt.Errorf("no tenant %q", tenant)
	}
	roleOf := map[string]string{} // schema → login role
	var roles []string
	for _, w := range topo.Workloads {
		if w.Tenant != tenant || w.DBRole == "" {
			continue
		}
		schema, ok := schemaOf[w.Service]
		if !ok {
			return nil, fmt.Errorf("workload %s has a database role but its service keeps no schema", w.Name)
		}
		roleOf[schema] = w.DBRole
		roles = append(roles, w.DBRole)
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("tenant %s runs no service that keeps data", tenant)
	}
	var out []migrationFile
	add := func(version int, tmpl, name string, data any) error {
		for _, dir := range []string{"up", "down"} {
			b, err := render(tmpl+"."+dir+".sql.tmpl", data)
			if err != nil {
				return err
			}
			out = append(out, migrationFile{name: fmt.Sprintf("%04d_%s.%s.sql", version, name, dir), data: b})
		}
		return nil
	}
	if err := add(1, "database", "database", map[string]any{"Database": t.Database, "Roles": strings.Join(roles, ", ")}); err != nil {
		return nil, err
	}
	version := 2
	for _, schema := range schemaOrder {
		role, ok := roleOf[schema]
		if !ok {
			continue
		}
		if err := add(version, schema, schema, map[string]any{"Tenant": tenant, "Role": role}); err != nil {
			return nil, err
		}
		version++
	}
	return out, nil
}

func render(name string, data any) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").ParseFS(migrationTemplates, "migrations/"+name)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
