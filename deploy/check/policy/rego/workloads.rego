# Pod hardening rules over every rendered object that carries a pod template.
package ztbank.deploy

pod_kinds := {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

# pods yields {obj, spec} for every object with a pod spec.
pods contains {"obj": o, "spec": o.spec.template.spec} if {
	some o in input.objects
	o.kind in pod_kinds
}

pods contains {"obj": o, "spec": o.spec} if {
	some o in input.objects
	o.kind == "Pod"
}

# containers yields every container, init containers included: they run on the same node
# with the same privileges.
containers contains {"obj": p.obj, "pod": p.spec, "c": c} if {
	some p in pods
	some c in p.spec.containers
}

containers contains {"obj": p.obj, "pod": p.spec, "c": c} if {
	some p in pods
	some c in p.spec.initContainers
}

ref(o) := sprintf("%s %s/%s", [o.kind, object.get(o.metadata, "namespace", ""), o.metadata.name])

# exception names the host-access exemptions: the SPIRE agent and the SPIFFE CSI driver.
exception(o) := e if {
	some e in exceptions
	e.kind == o.kind
	e.namespace == object.get(o.metadata, "namespace", "")
	e.name == o.metadata.name
}

is_exempt(o, what) if what in exception(o).allow

allowed_host_path(o, path) if path in exception(o).hostPaths

run_as_non_root(x) if x.c.securityContext.runAsNonRoot == true

run_as_non_root(x) if {
	not has_key(object.get(x.c, "securityContext", {}), "runAsNonRoot")
	x.pod.securityContext.runAsNonRoot == true
}

has_key(o, k) if _ = o[k]

deny contains msg if {
	some x in containers
	not run_as_non_root(x)
	not is_exempt(x.obj, "root")
	msg := sprintf("%s: container %s must set runAsNonRoot: true", [ref(x.obj), x.c.name])
}

deny contains msg if {
	some x in containers
	x.c.securityContext.runAsUser == 0
	not is_exempt(x.obj, "root")
	msg := sprintf("%s: container %s runs as uid 0", [ref(x.obj), x.c.name])
}

deny contains msg if {
	some x in containers
	not x.c.securityContext.readOnlyRootFilesystem == true
	msg := sprintf("%s: container %s must set readOnlyRootFilesystem: true", [ref(x.obj), x.c.name])
}

deny contains msg if {
	some x in containers
	not is_exempt(x.obj, "privileged")
	not "ALL" in object.get(x.c, ["securityContext", "capabilities", "drop"], [])
	msg := sprintf("%s: container %s must drop ALL capabilities", [ref(x.obj), x.c.name])
}

deny contains msg if {
	some x in containers
	not is_exempt(x.obj, "privileged")
	not x.c.securityContext.allowPrivilegeEscalation == false
	msg := sprintf("%s: container %s must set allowPrivilegeEscalation: false", [ref(x.obj), x.c.name])
}

deny contains msg if {
	some x in containers
	x.c.securityContext.privileged == true
	not is_exempt(x.obj, "privileged")
	msg := sprintf("%s: container %s is privileged", [ref(x.obj), x.c.name])
}

seccomp_runtime_default(x) if x.c.securityContext.seccompProfile.type == "RuntimeDefault"

seccomp_runtime_default(x) if {
	not x.c.securityContext.seccompProfile
	x.pod.securityContext.seccompProfile.type == "RuntimeDefault"
}

deny contains msg if {
	some x in containers
	not seccomp_runtime_default(x)
	not is_exempt(x.obj, "privileged")
	msg := sprintf("%s: container %s needs seccompProfile RuntimeDefault", [ref(x.obj), x.c.name])
}

deny contains msg if {
	some x in containers
	some kind in ["requests", "limits"]
	some res in ["cpu", "memory"]
	not x.c.resources[kind][res]
	msg := sprintf("%s: container %s has no %s.%s", [ref(x.obj), x.c.name, kind, res])
}

# An image needs an explicit tag or digest, and the tag may not be "latest": either way the
# running code would change under an unchanged manifest.
image_tag(img) := tag if {
	not contains(img, "@")
	parts := split(img, "/")
	last := parts[count(parts) - 1]
	contains(last, ":")
	tag := split(last, ":")[1]
}

deny contains msg if {
	some x in containers
	not contains(x.c.image, "@")
	not image_tag(x.c.image)
	msg := sprintf("%s: container %s image %s has no tag (implicitly latest)", [ref(x.obj), x.c.name, x.c.image])
}

deny contains msg if {
	some x in containers
	image_tag(x.c.image) == "latest"
	msg := sprintf("%s: container %s uses the latest tag", [ref(x.obj), x.c.name])
}

deny contains msg if {
	some p in pods
	some v in p.spec.volumes
	v.hostPath
	not allowed_host_path(p.obj, v.hostPath.path)
	msg := sprintf("%s: hostPath %s is not allowed", [ref(p.obj), v.hostPath.path])
}

deny contains msg if {
	some p in pods
	some field in ["hostNetwork", "hostPID", "hostIPC"]
	p.spec[field] == true
	not is_exempt(p.obj, field)
	msg := sprintf("%s: %s is not allowed", [ref(p.obj), field])
}

# Every ztbank workload pod probes its health port; a pod without probes is never restarted
# and never taken out of its Service.
deny contains msg if {
	some x in containers
	x.obj.metadata.annotations["ztbank.io/workload"]
	some probe in ["livenessProbe", "readinessProbe"]
	not x.c[probe]
	msg := sprintf("%s: container %s has no %s", [ref(x.obj), x.c.name, probe])
}

deny contains msg if {
	some o in input.objects
	o.kind == "Deployment"
	o.metadata.annotations["ztbank.io/workload"]
	not pdb_covers(o)
	msg := sprintf("%s: no PodDisruptionBudget selects it", [ref(o)])
}

pdb_covers(d) if {
	some p in input.objects
	p.kind == "PodDisruptionBudget"
	p.metadata.namespace == d.metadata.namespace
	labels_match(p.spec.selector.matchLabels, d.spec.template.metadata.labels)
}

labels_match(sel, labels) if {
	every k, v in sel {
		labels[k] == v
	}
}
