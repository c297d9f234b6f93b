# Zero-trust rules: mTLS, default deny, identities that match the topology, and the SPIRE,
# Istio and Emissary traps listed in DEPLOY-NOTES.
package ztbank.deploy

topo := input.topology

tenant_namespaces := {t | some t in topo.tenants}

objs(kind) := [o | some o in input.objects; o.kind == kind]

in_ns(o, ns) if object.get(o.metadata, "namespace", "") == ns

# --- mTLS -------------------------------------------------------------------------------

namespace_strict(ns) if {
	some pa in objs("PeerAuthentication")
	in_ns(pa, ns)
	not pa.spec.selector
	pa.spec.mtls.mode == "STRICT"
}

deny contains msg if {
	some ns in tenant_namespaces | {topo.platform_namespace}
	not namespace_strict(ns)
	msg := sprintf("namespace %s has no namespace-wide STRICT PeerAuthentication", [ns])
}

# In a tenant namespace nothing may weaken mTLS, not even for one port.
deny contains msg if {
	some pa in objs("PeerAuthentication")
	pa.metadata.namespace in tenant_namespaces
	some mode in weak_modes(pa)
	msg := sprintf("PeerAuthentication %s/%s sets mTLS %s in a tenant namespace", [pa.metadata.namespace, pa.metadata.name, mode])
}

weak_modes(pa) := {m |
	some m in {object.get(pa.spec, ["mtls", "mode"], "UNSET")} | {v.mode | some v in object.get(pa.spec, "portLevelMtls", {})}
	m in {"PERMISSIVE", "DISABLE"}
}

# --- AuthorizationPolicy -----------------------------------------------------------------

allow_nothing(ns) if {
	some ap in objs("AuthorizationPolicy")
	in_ns(ap, ns)
	not ap.spec.selector
	object.get(ap.spec, "action", "ALLOW") == "ALLOW"
	count(object.get(ap.spec, "rules", [])) == 0
}

deny contains msg if {
	some ns in tenant_namespaces | {topo.platform_namespace}
	not allow_nothing(ns)
	msg := sprintf("namespace %s has no default-deny (allow-nothing) AuthorizationPolicy", [ns])
}

# principals only match over mTLS, so a negative match in an ALLOW rule admits plaintext.
deny contains msg if {
	some ap in objs("AuthorizationPolicy")
	object.get(ap.spec, "action", "ALLOW") == "ALLOW"
	some rule in ap.spec.rules
	some from in object.get(rule, "from", [])
	some neg in ["notPrincipals", "notNamespaces", "notRequestPrincipals"]
	from.source[neg]
	msg := sprintf("AuthorizationPolicy %s/%s: ALLOW rule uses %s", [ap.metadata.namespace, ap.metadata.name, neg])
}

# RequestAuthentication lets token-less requests through; a tenant ALLOW that names callers
# must also demand a verified internal JWT.
deny contains msg if {
	some ap in objs("AuthorizationPolicy")
	ap.metadata.namespace in tenant_namespaces
	some rule in ap.spec.rules
	some from in object.get(rule, "from", [])
	from.source.principals
	not from.source.requestPrincipals
	not metrics_scrape_only(rule)
	msg := sprintf("AuthorizationPolicy %s/%s: rule admits principals without requestPrincipals", [ap.metadata.namespace, ap.metadata.name])
}

# Prometheus scrapes with its own SVID and no user: a rule that only lets it GET /metrics on
# the health port needs no internal JWT (ADR 0975). Anything more in the rule and the
# requestPrincipals demand above applies again.
metrics_scrape_only(rule) if {
	count(object.get(rule, "to", [])) > 0
	every to in rule.to {
		to.operation.ports == ["9090"]
		to.operation.methods == ["GET"]
		to.operation.paths == ["/metrics"]
		count(object.keys(to.operation)) == 3
	}
}

deny contains msg if {
	some ap in objs("AuthorizationPolicy")
	some rule in ap.spec.rules
	some from in object.get(rule, "from", [])
	some p in object.get(from.source, "principals", [])
	not startswith(p, sprintf("%s/ns/", [topo.trust_domain]))
	msg := sprintf("AuthorizationPolicy %s/%s: principal %s is outside trust domain %s", [ap.metadata.namespace, ap.metadata.name, p, topo.trust_domain])
}

# Each workload's ALLOW names exactly its topology callers (plus the ingress for gateways).
deny contains msg if {
	some w in topo.workloads
	count(w.allowed_principals) > 0
	got := {p |
		some ap in objs("AuthorizationPolicy")
		in_ns(ap, w.namespace)
		ap.spec.selector.matchLabels["app.kubernetes.io/name"] == w.service
		some rule in ap.spec.rules
		not jwks_only(rule)
		some from in object.get(rule, "from", [])
		some p in object.get(from.source, "principals", [])
	}
	want := {p | some p in w.allowed_principals}
	got != want
	msg := sprintf("workload %s: AuthorizationPolicy principals %v, topology says %v", [w.name, got, want])
}

# A rule that only lets callers GET the edge's public key set (tenant workloads verify
# internal JWTs with it) is not a call edge of the topology.
jwks_only(rule) if {
	count(object.get(rule, "to", [])) > 0
	every to in rule.to {
		to.operation.methods == ["GET"]
		to.operation.paths == ["/.well-known/jwks.json"]
	}
}

deny contains msg if {
	some ra in objs("RequestAuthentication")
	some rule in ra.spec.jwtRules
	rule.issuer != topo.issuer
	msg := sprintf("RequestAuthentication %s/%s trusts issuer %s, not the edge %s", [ra.metadata.namespace, ra.metadata.name, rule.issuer, topo.issuer])
}

deny contains msg if {
	some ns in tenant_namespaces
	not request_authn(ns)
	msg := sprintf("namespace %s has no RequestAuthentication for the internal JWT", [ns])
}

request_authn(ns) if {
	some ra in objs("RequestAuthentication")
	in_ns(ra, ns)
}

# --- NetworkPolicy -----------------------------------------------------------------------

network_default_deny(ns) if {
	some np in objs("NetworkPolicy")
	in_ns(np, ns)
	count(object.get(np.spec, "podSelector", {})) == 0
	{"Ingress", "Egress"} == {t | some t in np.spec.policyTypes}
	not np.spec.ingress
	not np.spec.egress
}

deny contains msg if {
	some ns in tenant_namespaces | {topo.platform_namespace}
	not network_default_deny(ns)
	msg := sprintf("namespace %s has no default-deny NetworkPolicy for ingress and egress", [ns])
}

# A NetworkPolicy rule without "from" admits every source; only the edge's public port and the
# ingress may be that open.
deny contains msg if {
	some np in objs("NetworkPolicy")
	np.metadata.namespace in tenant_namespaces
	some rule in np.spec.ingress
	not rule.from
	msg := sprintf("NetworkPolicy %s/%s admits ingress from anywhere", [np.metadata.namespace, np.metadata.name])
}

# --- Identities --------------------------------------------------------------------------

workload_deployments(w) := [d |
	some d in objs("Deployment")
	d.metadata.annotations["ztbank.io/workload"] == w.name
]

deny contains msg if {
	some w in topo.workloads
	count(workload_deployments(w)) != 1
	msg := sprintf("workload %s has %d Deployments, want 1", [w.name, count(workload_deployments(w))])
}

deny contains msg if {
	some d in objs("Deployment")
	name := d.metadata.annotations["ztbank.io/workload"]
	not topo_workload(name)
	msg := sprintf("%s runs workload %s, which is not in the topology", [ref(d), name])
}

topo_workload(name) := w if {
	some w in topo.workloads
	w.name == name
}

# selecting(d) are the ClusterSPIFFEIDs whose selectors match the Deployment's pods.
selecting(d) := [c |
	some c in objs("ClusterSPIFFEID")
	labels_match(object.get(c.spec, ["namespaceSelector", "matchLabels"], {}), {"kubernetes.io/metadata.name": d.metadata.namespace})
	labels_match(object.get(c.spec, ["podSelector", "matchLabels"], {}), d.spec.template.metadata.labels)
]

render_id(template, d) := id if {
	a := replace(template, "{{ .TrustDomain }}", topo.trust_domain)
	b := replace(a, "{{ .PodMeta.Namespace }}", d.metadata.namespace)
	id := replace(b, "{{ .PodSpec.ServiceAccountName }}", object.get(d.spec.template.spec, "serviceAccountName", "default"))
}

deny contains msg if {
	some d in objs("Deployment")
	w := topo_workload(d.metadata.annotations["ztbank.io/workload"])
	count(selecting(d)) != 1
	msg := sprintf("%s: %d ClusterSPIFFEIDs select its pods, want exactly 1", [ref(d), count(selecting(d))])
}

deny contains msg if {
	some d in objs("Deployment")
	w := topo_workload(d.metadata.annotations["ztbank.io/workload"])
	some c in selecting(d)
	got := render_id(c.spec.spiffeIDTemplate, d)
	got != w.id
	msg := sprintf("%s: SPIFFE ID %s, topology says %s", [ref(d), got, w.id])
}

deny contains msg if {
	some c in objs("ClusterSPIFFEID")
	some flag in ["admin", "downstream"]
	c.spec[flag] == true
	msg := sprintf("ClusterSPIFFEID %s sets %s", [c.metadata.name, flag])
}

# --- SPIRE configuration -----------------------------------------------------------------

configmap_file(name, key) := v if {
	some cm in objs("ConfigMap")
	cm.metadata.namespace == "spire"
	startswith(cm.metadata.name, name)
	v := cm.data[key]
}

cm_config := yaml.unmarshal(configmap_file("spire-controller-manager", "controller-manager-config.yaml"))

# With a className set and watchClassless false, the controller silently ignores every
# ClusterSPIFFEID of another class.
deny contains msg if {
	some c in objs("ClusterSPIFFEID")
	not object.get(cm_config, "watchClassless", false)
	object.get(c.spec, "className", "") != object.get(cm_config, "className", "")
	msg := sprintf("ClusterSPIFFEID %s has className %q but the controller manager only watches %q", [c.metadata.name, object.get(c.spec, "className", ""), object.get(cm_config, "className", "")])
}

deny contains msg if {
	cm_config.trustDomain != topo.trust_domain
	msg := sprintf("controller manager trustDomain %s, topology says %s", [cm_config.trustDomain, topo.trust_domain])
}

# Parent IDs are built from the cluster name: server, agent and controller manager must agree.
deny contains msg if {
	conf := configmap_file("spire-server", "server.conf")
	not contains(conf, sprintf("\"%s\" = {", [cm_config.clusterName]))
	msg := sprintf("spire-server k8s_psat has no cluster %q (the controller manager's clusterName)", [cm_config.clusterName])
}

deny contains msg if {
	conf := configmap_file("spire-agent", "agent.conf")
	not contains(conf, sprintf("cluster = \"%s\"", [cm_config.clusterName]))
	msg := sprintf("spire-agent k8s_psat cluster is not %q (the controller manager's clusterName)", [cm_config.clusterName])
}

deny contains msg if {
	some file in [["spire-server", "server.conf"], ["spire-agent", "agent.conf"]]
	conf := configmap_file(file[0], file[1])
	not contains(conf, sprintf("trust_domain = \"%s\"", [topo.trust_domain]))
	msg := sprintf("%s does not use trust domain %s", [file[1], topo.trust_domain])
}

deny contains msg if {
	conf := configmap_file("spire-server", "server.conf")
	not contains(conf, "service_account_allow_list = [\"spire:spire-agent\"]")
	msg := "spire-server k8s_psat must allow only spire:spire-agent"
}

agent := a if {
	some a in objs("DaemonSet")
	a.metadata.name == "spire-agent"
}

deny contains msg if {
	some field, want in {"hostPID": true, "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}
	object.get(agent.spec.template.spec, field, null) != want
	msg := sprintf("spire-agent DaemonSet must set %s: %v", [field, want])
}

deny contains msg if {
	not agent_token_audience
	msg := "spire-agent needs a projected token with audience spire-server"
}

agent_token_audience if {
	some v in agent.spec.template.spec.volumes
	some s in v.projected.sources
	s.serviceAccountToken.audience == "spire-server"
}

deny contains msg if {
	some d in objs("CSIDriver")
	d.metadata.name == "csi.spiffe.io"
	some field, want in {"attachRequired": false, "podInfoOnMount": true, "fsGroupPolicy": "None", "volumeLifecycleModes": ["Ephemeral"]}
	object.get(d.spec, field, null) != want
	msg := sprintf("CSIDriver csi.spiffe.io must set %s: %v", [field, want])
}

deny contains msg if {
	not bundle_configmap
	msg := "the spire-bundle ConfigMap must exist before the bundle publisher writes to it"
}

bundle_configmap if {
	some cm in objs("ConfigMap")
	cm.metadata.namespace == "spire"
	cm.metadata.name == "spire-bundle"
}

# --- Emissary ----------------------------------------------------------------------------

deny contains msg if {
	count(objs("AuthService")) != 1
	msg := sprintf("want exactly one Emissary AuthService (the edge), have %d", [count(objs("AuthService"))])
}

deny contains msg if {
	some a in objs("AuthService")
	a.spec.failure_mode_allow != false
	msg := sprintf("AuthService %s must fail closed (failure_mode_allow: false)", [a.metadata.name])
}

deny contains msg if {
	some a in objs("AuthService")
	not "x-spiffe-id" in object.get(a.spec, "allowed_authorization_headers", [])
	msg := sprintf("AuthService %s must copy x-spiffe-id upstream (allowed_authorization_headers)", [a.metadata.name])
}

deny contains msg if {
	some m in objs("Mapping")
	m.spec.bypass_auth == true
	msg := sprintf("Mapping %s bypasses the edge", [m.metadata.name])
}

deny contains msg if {
	some t in topo.tenants
	not tenant_mapping(t)
	msg := sprintf("no Emissary Mapping for /%s/", [t])
}

tenant_mapping(t) if {
	some m in objs("Mapping")
	m.spec.prefix == sprintf("/%s/", [t])
}

# --- Overlay settings --------------------------------------------------------------------

# A placeholder that survived the build means a kustomize replacement silently missed.
deny contains msg if {
	some o in input.objects
	walk(o, [_, v])
	v == "set-by-replacement"
	msg := sprintf("%s: a setting placeholder was not replaced", [ref(o)])
}
