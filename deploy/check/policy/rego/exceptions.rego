# The only two workloads allowed host access, and exactly what each may use. The SPIRE agent
# creates the Workload API socket in a host directory; the CSI driver bind-mounts that
# directory into pods, which needs privilege and mount propagation into the kubelet's pods dir.
package ztbank.deploy

exceptions := [
	{
		"kind": "DaemonSet", "namespace": "spire", "name": "spire-agent",
		"allow": {"root", "hostPID", "hostNetwork"},
		"hostPaths": ["/run/spire/agent-sockets"],
	},
	{
		"kind": "DaemonSet", "namespace": "spire", "name": "spiffe-csi-driver",
		"allow": {"root", "privileged"},
		"hostPaths": [
			"/run/spire/agent-sockets",
			"/var/lib/kubelet/plugins/csi.spiffe.io",
			"/var/lib/kubelet/pods",
			"/var/lib/kubelet/plugins_registry",
		],
	},
]
