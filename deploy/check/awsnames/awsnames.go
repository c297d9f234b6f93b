// Package awsnames spells the AWS names that both halves of the EKS deployment use: the IAM
// roles and Parameter Store paths the CloudFormation stacks create (package aws) and the
// Kubernetes SecretStores and ExternalSecrets that name them (package topogen). It is a leaf
// package with no dependencies so topogen can import it without pulling in eksctl and
// goformation, and package aws's tests can still import topogen (ADR 0965).
package awsnames

// Prefix names every AWS resource this project creates, so IAM names and paths stay
// predictable across stacks (cross-stack references are by name, not by export).
const Prefix = "ztbank"

// ParameterRoot is the Parameter Store prefix; each tenant's values live under
// ParameterRoot + <tenant> + "/", which is the boundary of that tenant's ESO reader role.
const ParameterRoot = "/" + Prefix + "/"

// The leaves of a tenant's parameters. ca-bundle is created by the runbook (the RDS CA bundle
// exceeds a CloudFormation parameter), host and region by the tenant stack.
const (
	ParamDBHost     = "db/host"
	ParamDBRegion   = "db/region"
	ParamDBCABundle = "db/ca-bundle"
)

// TenantParameters are every leaf a tenant's ExternalSecrets may read, so the leaves its ESO
// reader role is granted.
var TenantParameters = []string{ParamDBHost, ParamDBRegion, ParamDBCABundle}

// TenantParameterPath is the Parameter Store path (with trailing slash) under which all of a
// tenant's values live.
func TenantParameterPath(tenant string) string { return ParameterRoot + tenant + "/" }

// TenantParameterName is the Parameter Store name of one of a tenant's values.
func TenantParameterName(tenant, leaf string) string { return TenantParameterPath(tenant) + leaf }

// ESOControllerRoleName is the role ESO's own pod receives through Pod Identity. Its only
// permission is to assume the tenant reader roles.
const ESOControllerRoleName = Prefix + "-external-secrets"

// ESOTenantRoleName is the role a tenant's SecretStore makes ESO assume to read that tenant's
// parameters and nothing else.
func ESOTenantRoleName(tenant string) string { return Prefix + "-" + tenant + "-eso" }

// RoleARN is the ARN of an IAM role in the commercial partition ("aws"), the one the runbook
// deploys to; account is the 12-digit account ID (or a placeholder an overlay replaces).
func RoleARN(account, name string) string { return "arn:aws:iam::" + account + ":role/" + name }
