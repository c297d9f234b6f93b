package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingistio "istio.io/client-go/pkg/apis/networking/v1"
	securityistio "istio.io/client-go/pkg/apis/security/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	sigsjson "sigs.k8s.io/json"
)

// ErrUnknownKind is returned for an object no decoder is registered for: every kind that
// reaches a cluster must be checked, so an unknown one is an error, not a skip.
var ErrUnknownKind = errors.New("no strict decoder for kind")

// ErrStrict wraps every unknown-field or wrong-type error.
var ErrStrict = errors.New("strict decode")

// scheme holds the built-in and Istio types. Istio's client-go types register like any other
// API group, so the Kubernetes strict serializer checks their metadata and top-level fields;
// their protobuf specs are checked separately (see decodeIstioSpec).
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
		networkingv1.AddToScheme, rbacv1.AddToScheme, storagev1.AddToScheme,
		admissionregistrationv1.AddToScheme, apiextensionsv1.AddToScheme,
		securityistio.AddToScheme, networkingistio.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

var strictSerializer = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
	kjson.SerializerOptions{Strict: true})

// crdTypes are the custom resources without published Go types; see crds.go.
var crdTypes = map[schema.GroupVersionKind]func() any{
	{Group: "spire.spiffe.io", Version: "v1alpha1", Kind: "ClusterSPIFFEID"}:         func() any { return new(ClusterSPIFFEID) },
	{Group: "spire.spiffe.io", Version: "v1alpha1", Kind: "ControllerManagerConfig"}: func() any { return new(ControllerManagerConfig) },
	{Group: "getambassador.io", Version: "v3alpha1", Kind: "Mapping"}:                func() any { return new(Mapping) },
	{Group: "getambassador.io", Version: "v3alpha1", Kind: "Listener"}:               func() any { return new(Listener) },
	{Group: "getambassador.io", Version: "v3alpha1", Kind: "Host"}:                   func() any { return new(Host) },
	{Group: "getambassador.io", Version: "v3alpha1", Kind: "TLSContext"}:             func() any { return new(TLSContext) },
	{Group: "getambassador.io", Version: "v3alpha1", Kind: "AuthService"}:            func() any { return new(AuthService) },
	{Group: "external-secrets.io", Version: "v1", Kind: "ExternalSecret"}:            func() any { return new(ExternalSecret) },
	{Group: "external-secrets.io", Version: "v1", Kind: "SecretStore"}:               func() any { return new(SecretStore) },
	{Group: "external-secrets.io", Version: "v1", Kind: "ClusterSecretStore"}:        func() any { return new(ClusterSecretStore) },
	// The Prometheus Operator's own Go types, at the release whose CRDs the API-server test
	// installs (v0.85.0; ADR 0975).
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: func() any { return new(monitoringv1.ServiceMonitor) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}:     func() any { return new(monitoringv1.PodMonitor) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}: func() any { return new(monitoringv1.PrometheusRule) },
}

// Decode strictly decodes o into its Go type and returns it. Unknown fields, duplicate
// fields, wrong types and unknown kinds are errors.
func Decode(o Object) (any, error) {
	gv, err := schema.ParseGroupVersion(o.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.ID(), err)
	}
	gvk := gv.WithKind(o.Kind)
	if newT, ok := crdTypes[gvk]; ok {
		// sigs.k8s.io/json, not encoding/json: field names match case-sensitively, as in the
		// API server, so "spiffeIdTemplate" is not taken for "spiffeIDTemplate".
		v := newT()
		strictErrs, err := sigsjson.UnmarshalStrict(o.JSON, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", o.ID(), ErrStrict, err)
		}
		if len(strictErrs) > 0 {
			return nil, fmt.Errorf("%s: %w: %w", o.ID(), ErrStrict, errors.Join(strictErrs...))
		}
		return v, nil
	}
	if !scheme.Recognizes(gvk) {
		return nil, fmt.Errorf("%s (%s): %w", o.ID(), gvk, ErrUnknownKind)
	}
	v, _, err := strictSerializer.Decode(o.JSON, &gvk, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", o.ID(), ErrStrict, err)
	}
	if gvk.Group == securityistio.SchemeGroupVersion.Group || gvk.Group == networkingistio.SchemeGroupVersion.Group {
		if err := decodeIstioSpec(o, v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// decodeIstioSpec re-reads the spec of an Istio object with protojson, unknown fields
// disallowed. Istio's generated UnmarshalJSON for the spec discards unknown fields, so the
// strict serializer above accepts a misspelt "principal" where "principals" was meant; the
// spec's own protobuf message type, read strictly, does not.
func decodeIstioSpec(o Object, typed runtime.Object) error {
	specField := reflect.ValueOf(typed).Elem().FieldByName("Spec")
	if !specField.IsValid() {
		return fmt.Errorf("%s: Istio type %T has no Spec", o.ID(), typed)
	}
	msg, ok := reflect.New(specField.Type()).Interface().(proto.Message)
	if !ok {
		return fmt.Errorf("%s: Istio spec %s is not a protobuf message", o.ID(), specField.Type())
	}
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(o.JSON, &raw); err != nil {
		return fmt.Errorf("%s: %w", o.ID(), err)
	}
	if len(raw.Spec) == 0 {
		return nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(raw.Spec, msg); err != nil {
		return fmt.Errorf("%s: spec: %w: %w", o.ID(), ErrStrict, err)
	}
	return nil
}
