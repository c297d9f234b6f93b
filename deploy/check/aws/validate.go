package aws

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
	"github.com/awslabs/goformation/v7/schema"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The CloudFormation resource schema goformation carries (schema.CloudformationSchema,
// generated from AWS's resource specification): 7.6 MB of JSON, parsed once per process.
// Each resource type is compiled from only the definitions it reaches, which keeps the
// validator from indexing thousands of unrelated types.
var (
	schemaOnce sync.Once
	schemaDefs map[string]any
	schemaErr  error
	schemaMu   sync.Mutex
	compiled   = map[string]*jsonschema.Schema{}
)

const schemaURL = "file:///goformation/cloudformation.schema.json"

func definitions() (map[string]any, error) {
	schemaOnce.Do(func() {
		var doc struct {
			Definitions map[string]any `json:"definitions"`
		}
		if err := json.Unmarshal([]byte(schema.CloudformationSchema), &doc); err != nil {
			schemaErr = fmt.Errorf("parse goformation schema: %w", err)
			return
		}
		if len(doc.Definitions) == 0 {
			schemaErr = errors.New("goformation schema has no definitions")
			return
		}
		schemaDefs = doc.Definitions
	})
	return schemaDefs, schemaErr
}

// reach adds the definitions v refers to ("#/definitions/X"), transitively, to out.
func reach(defs map[string]any, v any, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if r, ok := c.(string); ok && k == "$ref" {
				name, ok := strings.CutPrefix(r, "#/definitions/")
				if _, seen := out[name]; ok && !seen {
					if d, exists := defs[name]; exists {
						out[name] = d
						reach(defs, d, out)
					}
				}
				continue
			}
			reach(defs, c, out)
		}
	case []any:
		for _, c := range x {
			reach(defs, c, out)
		}
	}
}

// resourceSchema is the schema of one resource type ("AWS::RDS::DBInstance"), including its
// Type, Properties and attributes (DependsOn, DeletionPolicy) with additionalProperties false.
func resourceSchema(typ string) (*jsonschema.Schema, error) {
	defs, err := definitions()
	if err != nil {
		return nil, err
	}
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if s, ok := compiled[typ]; ok {
		return s, nil
	}
	top, ok := defs[typ]
	if !ok {
		return nil, fmt.Errorf("no schema for resource type %s", typ)
	}
	sub := map[string]any{typ: top}
	reach(defs, top, sub)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4)
	if err := c.AddResource(schemaURL, map[string]any{"$schema": "http://json-schema.org/draft-04/schema#", "definitions": sub}); err != nil {
		return nil, fmt.Errorf("load schema of %s: %w", typ, err)
	}
	s, err := c.Compile(schemaURL + "#/definitions/" + typ)
	if err != nil {
		return nil, fmt.Errorf("compile schema of %s: %w", typ, err)
	}
	compiled[typ] = s
	return s, nil
}

// Decoded is a template read back: the raw JSON (intrinsics as written, for the policy
// checks), the resolved JSON (intrinsics replaced by typed stand-ins, as the schema expects
// literal values) and goformation's typed resources.
type Decoded struct {
	Name     string
	Raw      map[string]any
	Resolved map[string]any
	Typed    *cloudformation.Template
}

var subVar = regexp.MustCompile(`\$\{([^}!][^}]*)\}`)

// pseudo parameters a template may Ref or Sub.
var pseudo = map[string]string{
	"AWS::AccountId": "111122223333", "AWS::Region": "eu-west-1", "AWS::Partition": "aws",
	"AWS::StackName": "stack", "AWS::StackId": "stack-id", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": "",
}

// sampleParameter is a value of the parameter's declared type, so a Ref resolves to what
// CloudFormation would pass (a list for a list type, a string otherwise).
func sampleParameter(typ string) any {
	if strings.HasPrefix(typ, "List<") || typ == "CommaDelimitedList" {
		return []any{"sample-1", "sample-2"}
	}
	if typ == "Number" {
		return "1"
	}
	return "sample"
}

// Decode reads a generated template: every Ref, GetAtt and ${} in a Sub must name a
// parameter, pseudo parameter or resource of the template (with GetAtt only on resources),
// DependsOn must name resources; then goformation's parser decodes it into typed resources,
// and each resource validates against its type's schema.
func Decode(name string, body []byte) (*Decoded, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	params, _ := raw["Parameters"].(map[string]any)
	resources, _ := raw["Resources"].(map[string]any)
	if len(resources) == 0 {
		return nil, fmt.Errorf("%s: no resources", name)
	}
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, a...)...))
	}
	known := func(id string, attr bool) bool {
		if _, ok := resources[id]; ok {
			return true
		}
		if attr {
			return false
		}
		_, p := params[id]
		_, ps := pseudo[id]
		return p || ps
	}
	refOf := func(in any) any {
		id, _ := in.(string)
		if p, ok := params[id].(map[string]any); ok {
			typ, _ := p["Type"].(string)
			return sampleParameter(typ)
		}
		if v, ok := pseudo[id]; ok {
			return v
		}
		if !known(id, false) {
			bad("Ref to unknown %q", id)
		}
		return "ref-" + id
	}
	opts := &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
		"Ref": func(_ string, in any, _ any) any { return refOf(in) },
		"Fn::GetAtt": func(_ string, in any, _ any) any {
			l, _ := in.([]any)
			if len(l) != 2 {
				bad("Fn::GetAtt wants [resource, attribute], got %v", in)
				return "getatt"
			}
			id, _ := l[0].(string)
			if !known(id, true) {
				bad("Fn::GetAtt on unknown resource %q", id)
			}
			return fmt.Sprintf("getatt-%s-%v", id, l[1])
		},
		"Fn::Sub": func(_ string, in any, _ any) any {
			str, ok := in.(string)
			if !ok {
				bad("Fn::Sub wants a string, got %T", in)
				return "sub"
			}
			return subVar.ReplaceAllStringFunc(str, func(m string) string {
				v := subVar.FindStringSubmatch(m)[1]
				if id, _, attr := strings.Cut(v, "."); attr {
					if !known(id, true) {
						bad("Fn::Sub names unknown resource %q", id)
					}
					return "getatt-" + v
				}
				r := refOf(v)
				if s, ok := r.(string); ok {
					return s
				}
				return "list"
			})
		},
	}}
	for id, r := range resources {
		rm, _ := r.(map[string]any)
		deps := rm["DependsOn"]
		if d, ok := deps.(string); ok {
			deps = []any{d}
		}
		l, _ := deps.([]any)
		for _, d := range l {
			if ds, _ := d.(string); !known(ds, true) {
				bad("%s DependsOn unknown %v", id, d)
			}
		}
	}
	resolvedJSON, err := intrinsics.ProcessJSON(body, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var resolved map[string]any
	if err := json.Unmarshal(resolvedJSON, &resolved); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rres, _ := resolved["Resources"].(map[string]any)
	ids := slices.Sorted(maps.Keys(rres))
	for _, id := range ids {
		r, _ := rres[id].(map[string]any)
		typ, _ := r["Type"].(string)
		sch, err := resourceSchema(typ)
		if err != nil {
			bad("%s: %v", id, err)
			continue
		}
		if err := sch.Validate(r); err != nil {
			bad("%s (%s) does not match the CloudFormation schema: %v", id, typ, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// goformation's own decode is strict too (unknown properties fail), and gives the checks
	// typed resources.
	typed, err := goformation.ParseJSONWithOptions(body, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: goformation cannot decode it: %w", name, err)
	}
	for _, id := range ids {
		typ, _ := rres[id].(map[string]any)["Type"].(string)
		if r, ok := typed.Resources[id]; !ok || r.AWSCloudFormationType() != typ {
			bad("%s (%s) has no goformation type", id, typ)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &Decoded{Name: name, Raw: raw, Resolved: resolved, Typed: typed}, nil
}
