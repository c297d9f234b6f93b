// Package manifest builds the kustomize overlays and decodes every rendered object strictly
// into its Go type, so a misspelt field or a wrong type is a test failure here rather than a
// field the API server silently drops in a cluster.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered Kubernetes object.
type Object struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// JSON is the object as JSON, what the decoders and the policies consume.
	JSON []byte
}

// ID names the object in error messages.
func (o Object) ID() string {
	if o.Namespace == "" {
		return fmt.Sprintf("%s %s", o.Kind, o.Name)
	}
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

// Map returns the object as a generic map, for policies and for tests that mutate it.
func (o Object) Map() (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(o.JSON, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", o.ID(), err)
	}
	return m, nil
}

// Build runs kustomize on dir (a directory holding a kustomization.yaml) from the real
// filesystem, with the same defaults as `kustomize build`, and returns the objects in output
// order.
func Build(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	y, err := rm.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: render: %w", dir, err)
	}
	return Parse(y)
}

// Parse splits a multi-document YAML stream into objects. Empty documents are skipped.
func Parse(stream []byte) ([]Object, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(stream))
	var out []Object
	for i := 0; ; i++ {
		var n yamlv3.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		doc, err := yamlv3.Marshal(&n)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if string(j) == "null" {
			continue
		}
		o, err := FromJSON(j)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		out = append(out, o)
	}
}

// FromJSON wraps one object's JSON, reading its identifying fields.
func FromJSON(j []byte) (Object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(j, &head); err != nil {
		return Object{}, fmt.Errorf("read object header: %w", err)
	}
	if head.APIVersion == "" || head.Kind == "" {
		return Object{}, fmt.Errorf("object %q has no apiVersion or kind", head.Metadata.Name)
	}
	return Object{
		APIVersion: head.APIVersion,
		Kind:       head.Kind,
		Namespace:  head.Metadata.Namespace,
		Name:       head.Metadata.Name,
		JSON:       j,
	}, nil
}
