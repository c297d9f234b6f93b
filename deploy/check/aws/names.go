// Package aws generates the AWS half of the EKS deployment from the topology: the eksctl
// ClusterConfig (eksctl's own Go types) and CloudFormation templates built from goformation's
// typed resources. Nothing here names a tenant: tenants, workloads, their namespaces, service
// accounts and database users all come from libs/topology, so a tenant added there appears in
// the templates on the next `make aws-generate` (ADR 0960).
package aws

import (
	"strings"
	"unicode"

	"github.com/ztbank/ztbank/deploy/check/awsnames"
	"github.com/ztbank/ztbank/libs/topology"
)

// Prefix names every AWS resource this project creates (spelt in package awsnames, shared
// with the Kubernetes generator).
const Prefix = awsnames.Prefix

// SigningKeySecretName is the Secrets Manager secret holding the edge's internal-JWT signing
// keys. It is the one place the name is spelt; the edge's configuration names it on EKS.
const SigningKeySecretName = Prefix + "/edge/signing-keys"

// ParameterRoot is the Parameter Store prefix; each tenant's values live under
// ParameterRoot + <tenant> + "/", which is the boundary of that tenant's ESO reader role.
const ParameterRoot = awsnames.ParameterRoot

// TenantParameters are the parameter leaves the External Secrets objects
// (deploy/k8s/generated/eks) read for a tenant.
var TenantParameters = awsnames.TenantParameters

// TenantParameterName is the Parameter Store name of one of a tenant's values.
func TenantParameterName(tenant, leaf string) string {
	return awsnames.TenantParameterName(tenant, leaf)
}

// Role names. Pod Identity roles are per workload; ESO has a controller role that may only
// assume the per-tenant reader roles.
func WorkloadRoleName(w topology.Workload) string {
	return Prefix + "-" + w.Namespace + "-" + w.Service
}

// ESOControllerRoleName is the role ESO's own pod receives through Pod Identity.
const ESOControllerRoleName = awsnames.ESOControllerRoleName

// ESOTenantRoleName is the role a tenant's SecretStore makes ESO assume to read that
// tenant's parameters and nothing else; topogen writes the same name into the SecretStore.
func ESOTenantRoleName(tenant string) string { return awsnames.ESOTenantRoleName(tenant) }

// LBControllerRoleName is the AWS Load Balancer Controller's Pod Identity role.
const LBControllerRoleName = Prefix + "-aws-load-balancer-controller"

// Where the add-ons run (their Helm charts' defaults), for the Pod Identity associations.
const (
	ESONamespace            = "external-secrets"
	ESOServiceAccount       = "external-secrets"
	LBControllerNamespace   = "kube-system"
	LBControllerSA          = "aws-load-balancer-controller"
	TrailName               = Prefix + "-audit"
	RDSEngineVersion        = "16"
	RDSParameterGroupFamily = "postgres16"
)

// logicalID turns a topology name (bank-a, bank-a/user) into a CloudFormation logical ID
// fragment (BankA, BankAUser): logical IDs are alphanumeric only.
func logicalID(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		up := true
		for _, r := range p {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				up = true
				continue
			}
			if up {
				r = unicode.ToUpper(r)
				up = false
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// edgeWorkload is the platform workload with a public listener: the edge, which mints the
// internal JWTs and so is the only reader of the signing keys.
func edgeWorkload(t *topology.Topology) (topology.Workload, bool) {
	for _, w := range t.Workloads {
		if w.Public != "" && !w.External {
			return w, true
		}
	}
	return topology.Workload{}, false
}

// images are the repositories the EKS overlay pulls: one per service the topology runs.
func images(t *topology.Topology) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range t.Workloads {
		if w.External || seen[w.Service] {
			continue
		}
		seen[w.Service] = true
		out = append(out, Prefix+"/"+w.Service)
	}
	return out
}
