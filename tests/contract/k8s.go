package contract

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"

	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/ztbank/ztbank/libs/topology"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered Kubernetes object.
type Object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	JSON []byte `json:"-"`
}

func (o Object) key() string { return o.Metadata.Namespace + "/" + o.Metadata.Name }

// Kustomize renders dir with kustomize's defaults (the same as `kustomize build dir`).
func Kustomize(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	y, err := rm.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return ParseObjects(y)
}

// ParseObjects splits a YAML stream into objects.
func ParseObjects(stream []byte) ([]Object, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(stream))
	var out []Object
	for i := 0; ; i++ {
		var n yamlv3.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		doc, err := yamlv3.Marshal(&n)
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if string(j) == "null" {
			continue
		}
		var o Object
		if err := json.Unmarshal(j, &o); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		o.JSON = j
		out = append(out, o)
	}
}

type keyRef struct {
	Name     string `json:"name"`
	Key      string `json:"key"`
	Optional *bool  `json:"optional"`
}

type keyPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
}

type objRef struct {
	Name     string    `json:"name"`
	Optional *bool     `json:"optional"`
	Items    []keyPath `json:"items"`
}

type k8sContainer struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	Env   []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef    *keyRef `json:"secretKeyRef"`
			ConfigMapKeyRef *keyRef `json:"configMapKeyRef"`
			FieldRef        *struct {
				FieldPath string `json:"fieldPath"`
			} `json:"fieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	EnvFrom []struct {
		Prefix       string  `json:"prefix"`
		ConfigMapRef *objRef `json:"configMapRef"`
		SecretRef    *objRef `json:"secretRef"`
	} `json:"envFrom"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		SubPath   string `json:"subPath"`
	} `json:"volumeMounts"`
	SecurityContext *securityContext `json:"securityContext"`
	StartupProbe    *probe           `json:"startupProbe"`
	LivenessProbe   *probe           `json:"livenessProbe"`
	ReadinessProbe  *probe           `json:"readinessProbe"`
}

type probe struct {
	HTTPGet *struct {
		Path string          `json:"path"`
		Port json.RawMessage `json:"port"`
	} `json:"httpGet"`
}

type securityContext struct {
	RunAsUser          *int64  `json:"runAsUser"`
	RunAsGroup         *int64  `json:"runAsGroup"`
	FSGroup            *int64  `json:"fsGroup"`
	SupplementalGroups []int64 `json:"supplementalGroups"`
}

type k8sVolume struct {
	Name   string `json:"name"`
	Secret *struct {
		SecretName  string    `json:"secretName"`
		Items       []keyPath `json:"items"`
		Optional    *bool     `json:"optional"`
		DefaultMode *int      `json:"defaultMode"`
	} `json:"secret"`
	ConfigMap *struct {
		objRef
		DefaultMode *int `json:"defaultMode"`
	} `json:"configMap"`
	PersistentVolumeClaim *struct {
		ClaimName string `json:"claimName"`
	} `json:"persistentVolumeClaim"`
	Projected *struct {
		Sources []struct {
			Secret    *objRef `json:"secret"`
			ConfigMap *objRef `json:"configMap"`
		} `json:"sources"`
	} `json:"projected"`
}

type podTemplate struct {
	Metadata struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccountName string           `json:"serviceAccountName"`
		SecurityContext    *securityContext `json:"securityContext"`
		Containers         []k8sContainer   `json:"containers"`
		InitContainers     []k8sContainer   `json:"initContainers"`
		Volumes            []k8sVolume      `json:"volumes"`
	} `json:"spec"`
}

type k8sService struct {
	Spec struct {
		Selector map[string]string `json:"selector"`
		Ports    []struct {
			Name       string          `json:"name"`
			Port       int             `json:"port"`
			TargetPort json.RawMessage `json:"targetPort"`
		} `json:"ports"`
	} `json:"spec"`
}

type externalSecret struct {
	Spec struct {
		SecretStoreRef struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"secretStoreRef"`
		Target struct {
			Name     string `json:"name"`
			Template *struct {
				Data map[string]string `json:"data"`
			} `json:"template"`
		} `json:"target"`
		Data []struct {
			SecretKey string `json:"secretKey"`
		} `json:"data"`
	} `json:"spec"`
}

// Outside names Secrets a rendering refers to that something other than the rendering
// creates (Tilt, for kind), as "namespace/name" patterns with * for any run of characters,
// each with the keys it is created with.
type Outside map[string][]string

func (o Outside) keys(key string) ([]string, bool) {
	for pat, keys := range o {
		if ok, _ := path.Match(pat, key); ok {
			return keys, true
		}
	}
	return nil, false
}

// FromKubernetes reads a rendered overlay. dir is where mounts are materialised.
func FromKubernetes(name string, objs []Object, outside Outside, dir string) (*Rendering, error) {
	r := &Rendering{Name: name}
	pols, err := readPolicies(objs, topology.Default().TrustDomain.Name())
	if err != nil {
		return nil, err
	}
	r.Policy = func(from, to *Container, port int, d Dial) string {
		var toPod *Pod
		var toPorts map[string]int
		if to != nil {
			toPod, toPorts = to.Pod, to.Ports
		}
		if p := pols.networkAllows(from.Pod, toPod, port, toPorts); p != "" {
			return p
		}
		return pols.meshAllows(from.Pod, toPod, port, d)
	}
	secrets := map[string]map[string][]byte{}    // ns/name → key → value
	configMaps := map[string]map[string][]byte{} // ns/name → key → value
	accounts := map[string]bool{}
	claims := map[string]bool{}
	stores := map[string]bool{} // "ClusterSecretStore/name" or "SecretStore/ns/name"
	var storeRefs []struct{ from, ref string }
	services := map[string]k8sService{}
	for _, o := range objs {
		switch o.Kind {
		case "Secret":
			var s struct {
				Data       map[string]string `json:"data"`
				StringData map[string]string `json:"stringData"`
			}
			if err := json.Unmarshal(o.JSON, &s); err != nil {
				return nil, err
			}
			m := map[string][]byte{}
			for k, v := range s.Data {
				b, err := base64.StdEncoding.DecodeString(v)
				if err != nil {
					return nil, fmt.Errorf("Secret %s key %s: %w", o.key(), k, err)
				}
				m[k] = b
			}
			for k, v := range s.StringData {
				m[k] = []byte(v)
			}
			secrets[o.key()] = m
		case "ExternalSecret":
			var es externalSecret
			if err := json.Unmarshal(o.JSON, &es); err != nil {
				return nil, err
			}
			target := es.Spec.Target.Name
			if target == "" {
				target = o.Metadata.Name
			}
			m, err := externalSecretData(es)
			if err != nil {
				return nil, fmt.Errorf("ExternalSecret %s: %w", o.key(), err)
			}
			ref := "SecretStore/" + o.Metadata.Namespace + "/" + es.Spec.SecretStoreRef.Name
			if es.Spec.SecretStoreRef.Kind == "ClusterSecretStore" {
				ref = "ClusterSecretStore/" + es.Spec.SecretStoreRef.Name
			}
			storeRefs = append(storeRefs, struct{ from, ref string }{"ExternalSecret " + o.key(), ref})
			secrets[o.Metadata.Namespace+"/"+target] = m
		case "ConfigMap":
			var c struct {
				Data map[string]string `json:"data"`
			}
			if err := json.Unmarshal(o.JSON, &c); err != nil {
				return nil, err
			}
			m := map[string][]byte{}
			for k, v := range c.Data {
				m[k] = []byte(v)
			}
			configMaps[o.key()] = m
		case "ServiceAccount":
			accounts[o.key()] = true
		case "ClusterSecretStore":
			stores["ClusterSecretStore/"+o.Metadata.Name] = true
		case "SecretStore":
			stores["SecretStore/"+o.key()] = true
		case "PersistentVolumeClaim":
			claims[o.key()] = true
		case "Service":
			var s k8sService
			if err := json.Unmarshal(o.JSON, &s); err != nil {
				return nil, err
			}
			services[o.key()] = s
		case "Mapping", "AuthService", "RequestAuthentication":
			var x struct {
				Spec struct {
					Service     string `json:"service"`
					AuthService string `json:"auth_service"`
					JWTRules    []struct {
						JWKSURI string `json:"jwksUri"`
					} `json:"jwtRules"`
				} `json:"spec"`
			}
			if err := json.Unmarshal(o.JSON, &x); err != nil {
				return nil, err
			}
			from := &Container{ID: fmt.Sprintf("%s %s", o.Kind, o.key()), Namespace: o.Metadata.Namespace}
			for _, addr := range []string{x.Spec.Service, x.Spec.AuthService} {
				if addr == "" {
					continue
				}
				if !strings.Contains(addr, "://") {
					addr = "http://" + addr
				}
				host, port, err := urlHostPort(addr)
				if err != nil {
					r.Problems = append(r.Problems, from.ID+": "+err.Error())
					continue
				}
				r.ObjectDials = append(r.ObjectDials, ObjectDial{From: from, Dial: Dial{What: "upstream", Host: host, Port: port}})
			}
			for _, rule := range x.Spec.JWTRules {
				if rule.JWKSURI == "" {
					continue
				}
				host, port, err := urlHostPort(rule.JWKSURI)
				if err != nil {
					r.Problems = append(r.Problems, from.ID+": "+err.Error())
					continue
				}
				// istiod fetches it; the edge serves the key set on its health port.
				r.ObjectDials = append(r.ObjectDials, ObjectDial{From: from, Dial: Dial{What: "JWKS URI", Host: host, Port: port, Workload: "edge", Health: true}})
			}
		}
	}
	for _, sr := range storeRefs {
		if !stores[sr.ref] {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: reads from %s, which does not exist", sr.from, sr.ref))
		}
	}
	for k, keys := range outside {
		if strings.Contains(k, "*") {
			continue
		}
		m := map[string][]byte{}
		for _, key := range keys {
			m[key] = placeholder(key)
		}
		secrets[k] = m
	}
	secret := func(ns, name string) (map[string][]byte, bool) {
		if m, ok := secrets[ns+"/"+name]; ok {
			return m, true
		}
		if keys, ok := outside.keys(ns + "/" + name); ok {
			m := map[string][]byte{}
			for _, key := range keys {
				m[key] = placeholder(key)
			}
			return m, true
		}
		return nil, false
	}

	type pod struct {
		ns     string
		labels map[string]string
		cs     []*Container
	}
	var pods []pod
	for _, o := range objs {
		tmpl, extraVolumes, err := podTemplateOf(o)
		if err != nil {
			return nil, err
		}
		if tmpl == nil {
			continue
		}
		ns := o.Metadata.Namespace
		where := fmt.Sprintf("%s %s", o.Kind, o.key())
		problem := func(format string, args ...any) {
			r.Problems = append(r.Problems, where+": "+fmt.Sprintf(format, args...))
		}
		if sa := tmpl.Spec.ServiceAccountName; sa != "" && sa != "default" && !accounts[ns+"/"+sa] {
			problem("ServiceAccount %s does not exist", sa)
		}
		// Materialise each volume's files once per pod.
		volumeDirs := map[string]string{}
		volumeModes := map[string]int{} // Secret and ConfigMap volumes: the files' mode
		for _, v := range tmpl.Spec.Volumes {
			vdir := filepath.Join(dir, name, ns, o.Kind+"-"+o.Metadata.Name, "volumes", v.Name)
			files := map[string][]byte{}
			fromObject := func(kind string, m map[string][]byte, ok bool, objName string, items []keyPath, optional *bool) {
				if !ok {
					if optional == nil || !*optional {
						problem("volume %s: %s %s does not exist", v.Name, kind, objName)
					}
					return
				}
				if len(items) == 0 {
					for k, b := range m {
						files[k] = b
					}
					return
				}
				for _, it := range items {
					b, ok := m[it.Key]
					if !ok {
						problem("volume %s: %s %s has no key %s", v.Name, kind, objName, it.Key)
						continue
					}
					files[it.Path] = b
				}
			}
			switch {
			case v.Secret != nil:
				m, ok := secret(ns, v.Secret.SecretName)
				fromObject("Secret", m, ok, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional)
				volumeModes[v.Name] = modeOf(v.Secret.DefaultMode)
			case v.ConfigMap != nil:
				m, ok := configMaps[ns+"/"+v.ConfigMap.Name]
				fromObject("ConfigMap", m, ok, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional)
				volumeModes[v.Name] = modeOf(v.ConfigMap.DefaultMode)
			case v.PersistentVolumeClaim != nil:
				if !claims[ns+"/"+v.PersistentVolumeClaim.ClaimName] {
					problem("volume %s: PersistentVolumeClaim %s does not exist", v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					if src.Secret != nil {
						m, ok := secret(ns, src.Secret.Name)
						fromObject("Secret", m, ok, src.Secret.Name, src.Secret.Items, src.Secret.Optional)
					}
					if src.ConfigMap != nil {
						m, ok := configMaps[ns+"/"+src.ConfigMap.Name]
						fromObject("ConfigMap", m, ok, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional)
					}
				}
			}
			if err := writeFiles(vdir, files); err != nil {
				return nil, err
			}
			volumeDirs[v.Name] = vdir
		}
		for _, v := range extraVolumes {
			vdir := filepath.Join(dir, name, ns, o.Kind+"-"+o.Metadata.Name, "volumes", v)
			if err := writeFiles(vdir, nil); err != nil {
				return nil, err
			}
			volumeDirs[v] = vdir
		}
		p := pod{ns: ns, labels: tmpl.Metadata.Labels}
		podInfo := &Pod{Namespace: ns, Labels: tmpl.Metadata.Labels, ServiceAccount: tmpl.Spec.ServiceAccountName,
			Mesh: pols.nsLabels[ns]["istio-injection"] == "enabled" && tmpl.Metadata.Annotations["sidecar.istio.io/inject"] != "false"}
		for _, kc := range slices.Concat(tmpl.Spec.InitContainers, tmpl.Spec.Containers) {
			c := &Container{
				ID:        fmt.Sprintf("%s container %s", where, kc.Name),
				Namespace: ns,
				Image:     kc.Image,
				Binary:    binaryOf(kc.Image),
				Env:       map[string]string{},
				Mounts:    map[string]string{},
				Ports:     map[string]int{},
				Pod:       podInfo,
			}
			cproblem := func(format string, args ...any) {
				r.Problems = append(r.Problems, c.ID+": "+fmt.Sprintf(format, args...))
			}
			for _, pt := range kc.Ports {
				key := pt.Name
				if key == "" {
					key = strconv.Itoa(pt.ContainerPort)
				}
				c.Ports[key] = pt.ContainerPort
			}
			for kind, pr := range map[string]*probe{"startupProbe": kc.StartupProbe, "livenessProbe": kc.LivenessProbe, "readinessProbe": kc.ReadinessProbe} {
				if pr == nil || pr.HTTPGet == nil {
					continue
				}
				var n int
				var name string
				if json.Unmarshal(pr.HTTPGet.Port, &n) != nil {
					if err := json.Unmarshal(pr.HTTPGet.Port, &name); err != nil {
						cproblem("%s port %s", kind, pr.HTTPGet.Port)
						continue
					}
					port, ok := c.Ports[name]
					if !ok {
						cproblem("%s names port %s, which the container does not declare", kind, name)
						continue
					}
					n = port
				}
				c.Probes = append(c.Probes, n)
			}
			uid, gids := identity(tmpl.Spec.SecurityContext, kc.SecurityContext)
			for _, m := range kc.VolumeMounts {
				vdir, ok := volumeDirs[m.Name]
				if !ok {
					cproblem("volumeMount %s at %s names no volume", m.Name, m.MountPath)
					continue
				}
				// The kubelet writes Secret and ConfigMap files owned by root, with the pod's
				// fsGroup as their group when it has one.
				if mode, ok := volumeModes[m.Name]; ok && !readable(mode, uid, gids, tmpl.Spec.SecurityContext) {
					cproblem("volume %s at %s: files of mode %#o are not readable by uid %d (groups %v)", m.Name, m.MountPath, mode, uid, gids)
				}
				c.Mounts[m.MountPath] = filepath.Join(vdir, m.SubPath)
			}
			set := func(k, v string) {
				c.Env[k] = v
				if !slices.Contains(c.Set, k) {
					c.Set = append(c.Set, k)
				}
			}
			for _, ef := range kc.EnvFrom {
				var (
					m    map[string][]byte
					ok   bool
					kind string
					ref  *objRef
				)
				switch {
				case ef.ConfigMapRef != nil:
					kind, ref = "ConfigMap", ef.ConfigMapRef
					m, ok = configMaps[ns+"/"+ref.Name]
				case ef.SecretRef != nil:
					kind, ref = "Secret", ef.SecretRef
					m, ok = secret(ns, ref.Name)
				default:
					continue
				}
				if !ok {
					// An optional envFrom of a missing object is how variables silently went
					// missing before: the contract treats it as a missing object too.
					cproblem("envFrom %s %s does not exist", kind, ref.Name)
					continue
				}
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					set(ef.Prefix+k, string(m[k]))
				}
			}
			for _, e := range kc.Env {
				if e.ValueFrom == nil {
					set(e.Name, expand(e.Value, c.Env))
					continue
				}
				vf := e.ValueFrom
				switch {
				case vf.SecretKeyRef != nil, vf.ConfigMapKeyRef != nil:
					ref, kind := vf.SecretKeyRef, "Secret"
					var m map[string][]byte
					var ok bool
					if ref != nil {
						m, ok = secret(ns, ref.Name)
					} else {
						ref, kind = vf.ConfigMapKeyRef, "ConfigMap"
						m, ok = configMaps[ns+"/"+ref.Name]
					}
					if !ok {
						cproblem("env %s: %s %s does not exist", e.Name, kind, ref.Name)
						continue
					}
					b, ok := m[ref.Key]
					if !ok {
						cproblem("env %s: %s %s has no key %s", e.Name, kind, ref.Name, ref.Key)
						continue
					}
					set(e.Name, string(b))
				case vf.FieldRef != nil:
					set(e.Name, fieldValue(vf.FieldRef.FieldPath, o, ns))
				}
			}
			p.cs = append(p.cs, c)
			r.Containers = append(r.Containers, c)
		}
		pods = append(pods, p)
	}

	r.Resolve = func(from *Container, host string, port int) ([]Target, error) {
		if host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1" {
			// Our pods run one container of ours; a loopback address reaches only itself.
			return nil, fmt.Errorf("a loopback address: nothing else in the pod serves it")
		}
		name, ns, ok := clusterHost(host, from.Namespace)
		if !ok {
			return nil, fmt.Errorf("%s is not a cluster Service name", host)
		}
		svc, ok := services[ns+"/"+name]
		if !ok {
			return nil, fmt.Errorf("no Service %s/%s in the rendering", ns, name)
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Port != port {
				continue
			}
			var targetName string
			targetNum := sp.Port
			if len(sp.TargetPort) > 0 {
				if err := json.Unmarshal(sp.TargetPort, &targetNum); err != nil {
					targetNum = 0
					if err := json.Unmarshal(sp.TargetPort, &targetName); err != nil {
						return nil, fmt.Errorf("Service %s/%s port %d: targetPort %s", ns, name, port, sp.TargetPort)
					}
				}
			}
			var out []Target
			for _, p := range pods {
				if p.ns != ns || len(svc.Spec.Selector) == 0 || !selects(svc.Spec.Selector, p.labels) {
					continue
				}
				for _, c := range p.cs {
					for pname, pnum := range c.Ports {
						if (targetName != "" && pname == targetName) || (targetName == "" && pnum == targetNum) {
							out = append(out, Target{C: c, Port: pnum})
						}
					}
				}
			}
			if len(out) == 0 {
				return nil, fmt.Errorf("Service %s/%s port %d targets %s, which no selected container declares", ns, name, port, strings.Trim(string(sp.TargetPort), `"`))
			}
			return out, nil
		}
		var ports []string
		for _, sp := range svc.Spec.Ports {
			ports = append(ports, strconv.Itoa(sp.Port))
		}
		return nil, fmt.Errorf("Service %s/%s has no port %d (it has %s)", ns, name, port, strings.Join(ports, ", "))
	}
	return r, nil
}

// podTemplateOf returns the pod template of a workload object, and for a StatefulSet the
// names of its volumeClaimTemplates (volumes the controller adds).
func podTemplateOf(o Object) (*podTemplate, []string, error) {
	var tmpl podTemplate
	var extra []string
	switch o.Kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		var w struct {
			Spec struct {
				Template             podTemplate `json:"template"`
				VolumeClaimTemplates []struct {
					Metadata struct {
						Name string `json:"name"`
					} `json:"metadata"`
				} `json:"volumeClaimTemplates"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(o.JSON, &w); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", o.Kind, o.key(), err)
		}
		tmpl = w.Spec.Template
		for _, v := range w.Spec.VolumeClaimTemplates {
			extra = append(extra, v.Metadata.Name)
		}
	case "CronJob":
		var w struct {
			Spec struct {
				JobTemplate struct {
					Spec struct {
						Template podTemplate `json:"template"`
					} `json:"spec"`
				} `json:"jobTemplate"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(o.JSON, &w); err != nil {
			return nil, nil, err
		}
		tmpl = w.Spec.JobTemplate.Spec.Template
	case "Pod":
		if err := json.Unmarshal(o.JSON, &tmpl); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, nil
	}
	return &tmpl, extra, nil
}

// externalSecretData is the Secret an ExternalSecret makes: its template's keys when it has
// a template (evaluated with a placeholder for every remote value), else its data keys. The
// placeholder's host form (external.invalid) marks addresses that come from outside.
func externalSecretData(es externalSecret) (map[string][]byte, error) {
	values := map[string]string{}
	for _, d := range es.Spec.Data {
		values[d.SecretKey] = "external.invalid"
		if ext := path.Ext(d.SecretKey); ext == ".pem" || ext == ".crt" || ext == ".key" {
			values[d.SecretKey] = string(placeholder(d.SecretKey))
		}
	}
	out := map[string][]byte{}
	if t := es.Spec.Target.Template; t != nil && len(t.Data) > 0 {
		for k, text := range t.Data {
			tm, err := template.New(k).Option("missingkey=error").Parse(text)
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", k, err)
			}
			var b bytes.Buffer
			if err := tm.Execute(&b, values); err != nil {
				return nil, fmt.Errorf("template %s: %w", k, err)
			}
			out[k] = b.Bytes()
		}
		return out, nil
	}
	for k, v := range values {
		out[k] = []byte(v)
	}
	return out, nil
}

// clusterHost splits a Service DNS name as a pod in ns resolves it.
func clusterHost(host, ns string) (name, namespace string, ok bool) {
	h := strings.TrimSuffix(strings.TrimSuffix(host, ".svc.cluster.local"), ".svc")
	parts := strings.Split(h, ".")
	switch len(parts) {
	case 1:
		return parts[0], ns, true
	case 2:
		return parts[0], parts[1], true
	}
	return "", "", false
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// expand resolves $(VAR) references to earlier variables, as the kubelet does.
func expand(v string, env map[string]string) string {
	for {
		i := strings.Index(v, "$(")
		if i < 0 {
			return v
		}
		j := strings.Index(v[i:], ")")
		if j < 0 {
			return v
		}
		name := v[i+2 : i+j]
		val, ok := env[name]
		if !ok {
			val = "$(" + name + ")"
		}
		return v[:i] + val + expand(v[i+j+1:], env)
	}
}

func fieldValue(fieldPath string, o Object, ns string) string {
	switch fieldPath {
	case "metadata.namespace":
		return ns
	case "metadata.name":
		return o.Metadata.Name + "-0"
	case "spec.nodeName":
		return "node-0"
	case "spec.serviceAccountName":
		return "sa"
	}
	return "10.0.0.1"
}

func modeOf(m *int) int {
	if m == nil {
		return 0o644
	}
	return *m
}

// identity is the uid and groups a container runs with (container settings over the pod's;
// an unset user is the image's, assumed non-root 65532 as all ours are).
func identity(pod, c *securityContext) (int64, []int64) {
	uid, gid := int64(65532), int64(65532)
	var groups []int64
	for _, sc := range []*securityContext{pod, c} {
		if sc == nil {
			continue
		}
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
		groups = append(groups, sc.SupplementalGroups...)
	}
	groups = append([]int64{gid}, groups...)
	if pod != nil && pod.FSGroup != nil {
		groups = append(groups, *pod.FSGroup)
	}
	return uid, groups
}

func readable(mode int, uid int64, gids []int64, pod *securityContext) bool {
	if uid == 0 || mode&0o004 != 0 {
		return true
	}
	return mode&0o040 != 0 && pod != nil && pod.FSGroup != nil && slices.Contains(gids, *pod.FSGroup)
}
