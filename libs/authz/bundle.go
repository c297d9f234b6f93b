package authz

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Bundle returns exactly what the engine evaluates: the policy modules' source (tests
// excluded) by file name, and the data document (permission table, topology, the service
// itself). It exists so an external OPA can be given the same policy and data, as the
// side-by-side benchmark does; the engine keeps using its own prepared copy.
func (e *Engine) Bundle() (modules map[string][]byte, data map[string]any) {
	return maps.Clone(e.policy.sources), e.data
}

// WriteBundle writes Bundle to dir as OPA loads a directory: the .rego files and one
// data.json holding the whole data document at its root.
func (e *Engine) WriteBundle(dir string) error {
	modules, data := e.Bundle()
	for name, src := range modules {
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			return fmt.Errorf("write policy bundle: %w", err)
		}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("write policy bundle: encode data: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, DataFile), b, 0o644); err != nil {
		return fmt.Errorf("write policy bundle: %w", err)
	}
	return nil
}

// InputDocument returns the input document the policy sees for in, as plain JSON values:
// the same document Decide evaluates, for tools that send it to another policy engine.
func (e *Engine) InputDocument(in Input) (any, error) {
	v, err := ast.JSON(in.value(e.terms))
	if err != nil {
		return nil, fmt.Errorf("authz: input document: %w", err)
	}
	return v, nil
}
