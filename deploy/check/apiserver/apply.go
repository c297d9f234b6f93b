package apiserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ztbank/ztbank/deploy/check/manifest"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager owns every field ztbank applies, as `kubectl apply --server-side
// --field-manager=ztbank` would.
const FieldManager = "ztbank"

// Applier applies objects with server-side apply and strict field validation: an unknown or
// duplicate field is an error from the API server, not a warning.
type Applier struct {
	Dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	// DiscoveryTimeout bounds the wait for a freshly established CRD to appear in discovery.
	DiscoveryTimeout time.Duration
	warnings         *warningCollector
}

// warningCollector keeps the API server's warnings (deprecated APIs, Pod Security warnings
// on workload templates, ...) with the object whose request drew them.
type warningCollector struct {
	mu   sync.Mutex
	list []string
}

type objectIDKey struct{}

func (w *warningCollector) HandleWarningHeaderWithContext(ctx context.Context, _ int, _ string, text string) {
	id, _ := ctx.Value(objectIDKey{}).(string)
	if id == "" {
		id = "(no object)"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, id+": "+text)
}

// Warnings returns every warning the API server sent for Apply calls so far.
func (a *Applier) Warnings() []string {
	a.warnings.mu.Lock()
	defer a.warnings.mu.Unlock()
	return append([]string(nil), a.warnings.list...)
}

// NewApplier builds an Applier for the cluster at cfg.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	w := &warningCollector{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = nil
	cfg.WarningHandlerWithContext = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return &Applier{
		Dynamic:          dyn,
		mapper:           restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		DiscoveryTimeout: time.Minute,
		warnings:         w,
	}, nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Resource maps o to its REST resource. A kind unknown to discovery is retried (after a
// discovery refresh) until DiscoveryTimeout: a CRD counts as Established a moment before its
// group shows in discovery.
func (a *Applier) Resource(ctx context.Context, o manifest.Object) (dynamic.ResourceInterface, *meta.RESTMapping, error) {
	gv, err := schema.ParseGroupVersion(o.APIVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", o.ID(), err)
	}
	gvk := gv.WithKind(o.Kind)
	deadline := time.Now().Add(a.DiscoveryTimeout)
	var mapping *meta.RESTMapping
	for {
		mapping, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			break
		}
		if !meta.IsNoMatchError(err) || time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%s: no API resource for %s: %w", o.ID(), gvk, err)
		}
		a.mapper.Reset()
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.Namespace == "" {
			// kubectl would drop it into the context's namespace: in a rendering that is a bug.
			return nil, nil, fmt.Errorf("%s: namespaced %s without metadata.namespace", o.ID(), gvk.Kind)
		}
		return a.Dynamic.Resource(mapping.Resource).Namespace(o.Namespace), mapping, nil
	}
	if o.Namespace != "" {
		return nil, nil, fmt.Errorf("%s: cluster-scoped %s with metadata.namespace %q", o.ID(), gvk.Kind, o.Namespace)
	}
	return a.Dynamic.Resource(mapping.Resource), mapping, nil
}

// Apply server-side applies one object with FieldManager and strict field validation.
func (a *Applier) Apply(ctx context.Context, o manifest.Object) (*unstructured.Unstructured, error) {
	ri, _, err := a.Resource(ctx, o)
	if err != nil {
		return nil, err
	}
	ctx = context.WithValue(ctx, objectIDKey{}, o.ID())
	got, err := ri.Patch(ctx, o.Name, types.ApplyPatchType, o.JSON, metav1.PatchOptions{
		FieldManager:    FieldManager,
		FieldValidation: metav1.FieldValidationStrict,
	})
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w", o.ID(), err)
	}
	return got, nil
}

// WaitEstablished waits until the CRD named name reports Established and NamesAccepted.
func (a *Applier) WaitEstablished(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		u, err := a.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			ok := map[string]bool{}
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["status"] == "True" {
					ok[fmt.Sprint(m["type"])] = true
				}
				// A NamesAccepted=False CRD never becomes Established: say why now.
				if m["type"] == "NamesAccepted" && m["status"] == "False" {
					return fmt.Errorf("CRD %s: names not accepted: %v", name, m["message"])
				}
			}
			if ok["Established"] && ok["NamesAccepted"] {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not established after %s (last error: %v): %w", name, timeout, err, ctx.Err())
		case <-tick.C:
		}
	}
}

// Phase orders a rendering the way it must reach a cluster: namespaces, then CRDs (and wait
// for them), then everything else, and admission webhook configurations last, because their
// backends (spire-controller-manager's webhook) never run in the test cluster and a
// fail-closed webhook registered first would refuse the objects after it.
func Phase(o manifest.Object) int {
	switch o.Kind {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	case "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
		return 3
	}
	return 2
}

// ApplyAll applies objs in Phase order, waiting for each CRD to be established before any
// later phase. It returns the stored resourceVersion of every accepted object (by ID) and
// every refusal, not only the first.
func (a *Applier) ApplyAll(ctx context.Context, objs []manifest.Object, crdTimeout time.Duration) (map[string]string, error) {
	versions := map[string]string{}
	var errs []error
	for phase := 0; phase <= 3; phase++ {
		var crds []string
		for _, o := range objs {
			if Phase(o) != phase {
				continue
			}
			got, err := a.Apply(ctx, o)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			versions[o.ID()] = got.GetResourceVersion()
			if o.Kind == "CustomResourceDefinition" {
				crds = append(crds, o.Name)
			}
		}
		for _, name := range crds {
			if err := a.WaitEstablished(ctx, name, crdTimeout); err != nil {
				errs = append(errs, err)
			}
		}
		if len(crds) > 0 {
			a.mapper.Reset()
		}
	}
	return versions, errors.Join(errs...)
}
