package apiserver

import (
	"fmt"
	"os"
	"strings"

	"github.com/ztbank/ztbank/deploy/check/manifest"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TemplatePod is a Pod built from one workload's pod template, as its controller would
// create it.
type TemplatePod struct {
	// Owner names the workload, e.g. "Deployment bank-a/ledger".
	Owner string
	Pod   *corev1.Pod
}

// PodsFromTemplates returns one Pod for every pod template in objs (Deployment, DaemonSet,
// StatefulSet, ReplicaSet, Job, CronJob). StatefulSet pods get the volumes their
// volumeClaimTemplates add, as the StatefulSet controller does.
func PodsFromTemplates(objs []manifest.Object) ([]TemplatePod, error) {
	var out []TemplatePod
	for _, o := range objs {
		var (
			tmpl  corev1.PodTemplateSpec
			extra []corev1.Volume
		)
		switch o.Kind {
		case "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob":
		default:
			continue
		}
		v, err := manifest.Decode(o)
		if err != nil {
			return nil, err
		}
		switch w := v.(type) {
		case *appsv1.Deployment:
			tmpl = w.Spec.Template
		case *appsv1.DaemonSet:
			tmpl = w.Spec.Template
		case *appsv1.ReplicaSet:
			tmpl = w.Spec.Template
		case *appsv1.StatefulSet:
			tmpl = w.Spec.Template
			for _, pvc := range w.Spec.VolumeClaimTemplates {
				extra = append(extra, corev1.Volume{
					Name: pvc.Name,
					VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
						ClaimName: pvc.Name + "-" + w.Name + "-0",
					}},
				})
			}
		case *batchv1.Job:
			tmpl = w.Spec.Template
		case *batchv1.CronJob:
			tmpl = w.Spec.JobTemplate.Spec.Template
		default:
			return nil, fmt.Errorf("%s: decoded as %T", o.ID(), v)
		}
		pod := &corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{
				Name:        podName(o.Kind, o.Name),
				Namespace:   o.Namespace,
				Labels:      tmpl.Labels,
				Annotations: tmpl.Annotations,
			},
			Spec: *tmpl.Spec.DeepCopy(),
		}
		pod.Spec.Volumes = append(pod.Spec.Volumes, extra...)
		out = append(out, TemplatePod{Owner: o.ID(), Pod: pod})
	}
	return out, nil
}

func podName(kind, name string) string {
	n := strings.ToLower(kind) + "-" + name
	if len(n) > 63 {
		n = n[:63]
	}
	return strings.TrimRight(n, "-")
}

// MeshConfig is what Istio's sidecar injector would be configured with, read from the
// IstioOperator in deploy/istio (the values the injection template consults).
type MeshConfig struct {
	// CNI is spec.components.cni.enabled; istioctl copies it to values.pilot.cni.enabled,
	// which decides between the privileged istio-init and the unprivileged istio-validation.
	CNI bool
	// ProxyPrivileged is values.global.proxy.privileged.
	ProxyPrivileged bool
	// ProxySeccompProfile is values.global.proxy.seccompProfile.
	ProxySeccompProfile *corev1.SeccompProfile
	// NativeSidecars is on by default since Istio 1.27 (values.pilot.env.ENABLE_NATIVE_SIDECARS).
	NativeSidecars bool
}

// LoadMeshConfig reads the IstioOperator file at path.
func LoadMeshConfig(path string) (MeshConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return MeshConfig{}, fmt.Errorf("read Istio config: %w", err)
	}
	var iop struct {
		Kind string `json:"kind"`
		Spec struct {
			Components struct {
				CNI struct {
					Enabled bool `json:"enabled"`
				} `json:"cni"`
			} `json:"components"`
			Values struct {
				Global struct {
					Proxy struct {
						Privileged     bool                   `json:"privileged"`
						SeccompProfile *corev1.SeccompProfile `json:"seccompProfile"`
					} `json:"proxy"`
				} `json:"global"`
				Pilot struct {
					Env map[string]string `json:"env"`
				} `json:"pilot"`
			} `json:"values"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &iop); err != nil {
		return MeshConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	if iop.Kind != "IstioOperator" {
		return MeshConfig{}, fmt.Errorf("%s: kind %q, want IstioOperator", path, iop.Kind)
	}
	return MeshConfig{
		CNI:                 iop.Spec.Components.CNI.Enabled,
		ProxyPrivileged:     iop.Spec.Values.Global.Proxy.Privileged,
		ProxySeccompProfile: iop.Spec.Values.Global.Proxy.SeccompProfile,
		NativeSidecars:      iop.Spec.Values.Pilot.Env["ENABLE_NATIVE_SIDECARS"] != "false",
	}, nil
}

// Istio's proxy user and group (the injection template's .ProxyUID/.ProxyGID default).
const istioProxyID = 1337

// InjectionWanted says whether Istio's injector would mutate this pod: the namespace opts in
// with istio-injection=enabled, the pod has not opted out, and it is not on the host network
// (the injector skips hostNetwork pods).
func InjectionWanted(nsLabels map[string]string, pod *corev1.Pod) bool {
	if nsLabels["istio-injection"] != "enabled" {
		return false
	}
	if pod.Labels["sidecar.istio.io/inject"] == "false" || pod.Annotations["sidecar.istio.io/inject"] == "false" {
		return false
	}
	return !pod.Spec.HostNetwork
}

// Inject adds what Istio's sidecar injection template (manifests/charts/istio-control/
// istio-discovery/files/injection-template.yaml at the pinned istio.io/istio version; see
// TestInjectionModelMatchesServedTemplate) adds that Pod Security admission looks at: the
// init container (istio-init with NET_ADMIN/NET_RAW as root without CNI, istio-validation as
// 1337 with no capabilities with CNI), the istio-proxy container (a native sidecar, i.e. an
// init container with restartPolicy Always, by default) and its volumes. The "spire"
// template (deploy/istio) swaps the workload-socket emptyDir for the SPIFFE CSI volume.
// Environment, args and probes are left out: admission does not judge them.
func Inject(pod *corev1.Pod, mc MeshConfig) {
	priv := mc.ProxyPrivileged
	var initC corev1.Container
	if mc.CNI {
		initC = corev1.Container{
			Name: "istio-validation",
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: &priv,
				Privileged:               &priv,
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				ReadOnlyRootFilesystem:   ptr(true),
				RunAsGroup:               ptr(int64(istioProxyID)),
				RunAsUser:                ptr(int64(istioProxyID)),
				RunAsNonRoot:             ptr(true),
			},
		}
	} else {
		initC = corev1.Container{
			Name: "istio-init",
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: &priv,
				Privileged:               &priv,
				Capabilities: &corev1.Capabilities{
					Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
					Drop: []corev1.Capability{"ALL"},
				},
				ReadOnlyRootFilesystem: ptr(false),
				RunAsGroup:             ptr(int64(0)),
				RunAsNonRoot:           ptr(false),
				RunAsUser:              ptr(int64(0)),
			},
		}
	}
	initC.Image = "docker.io/istio/proxyv2:1.27.0"
	initC.Args = []string{"istio-iptables"}
	initC.SecurityContext.SeccompProfile = mc.ProxySeccompProfile

	proxy := corev1.Container{
		Name:  "istio-proxy",
		Image: "docker.io/istio/proxyv2:1.27.0",
		Args:  []string{"proxy", "sidecar"},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &priv,
			Privileged:               &priv,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			ReadOnlyRootFilesystem:   ptr(true),
			RunAsNonRoot:             ptr(true),
			RunAsUser:                ptr(int64(istioProxyID)),
			RunAsGroup:               ptr(int64(istioProxyID)),
			SeccompProfile:           mc.ProxySeccompProfile,
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "workload-socket", MountPath: "/var/run/secrets/workload-spiffe-uds"},
			{Name: "credential-socket", MountPath: "/var/run/secrets/credential-uds"},
			{Name: "workload-certs", MountPath: "/var/run/secrets/workload-spiffe-credentials"},
			{Name: "istiod-ca-cert", MountPath: "/var/run/secrets/istio"},
			{Name: "istio-data", MountPath: "/var/lib/istio/data"},
			{Name: "istio-envoy", MountPath: "/etc/istio/proxy"},
			{Name: "istio-token", MountPath: "/var/run/secrets/tokens"},
			{Name: "istio-podinfo", MountPath: "/etc/istio/pod"},
		},
	}
	workloadSocket := corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	if strings.Contains(pod.Annotations["inject.istio.io/templates"], "spire") {
		workloadSocket = corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "csi.spiffe.io", ReadOnly: ptr(true)}}
	}
	vols := []corev1.Volume{
		{Name: "workload-socket", VolumeSource: workloadSocket},
		{Name: "credential-socket", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "workload-certs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		{Name: "istio-data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "istio-podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		}}}},
		{Name: "istio-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "istio-ca", ExpirationSeconds: ptr(int64(43200)), Path: "istio-token"}},
		}}}},
		{Name: "istiod-ca-cert", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "istio-ca-root-cert"},
		}}},
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, vols...)
	if mc.NativeSidecars {
		proxy.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
		pod.Spec.InitContainers = append([]corev1.Container{initC, proxy}, pod.Spec.InitContainers...)
	} else {
		pod.Spec.InitContainers = append([]corev1.Container{initC}, pod.Spec.InitContainers...)
		pod.Spec.Containers = append(pod.Spec.Containers, proxy)
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels["security.istio.io/tlsMode"] = "istio"
}

func ptr[T any](v T) *T { return &v }
