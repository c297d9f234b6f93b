# Package ztbank.authz decides whether one request may proceed. It is evaluated in-process by
# libs/authz, once per route-level check and once per resource-level check; the Go side
# supplies the input (see libs/authz/input.go) and the data:
#
#   data.ztbank.rbac      permissions, roles and what each role grants (policy/data.json)
#   data.ztbank.topology  workloads, their SPIFFE IDs and who may call whom (topology.yaml)
#   data.ztbank.service   the workload this engine runs in: name, tenant, SPIFFE ID
#
# Deny is the default: a request is allowed only when some grant applies and no deny rule
# fires. Every deny rule adds a reason; the first reason in `reasons` order is reported so
# the audit log names the most fundamental failure.
package ztbank.authz

# Reasons in reporting order: who is calling, what they ask for, for whom, then on what.
reasons := [
	"unknown_workload",
	"workload_not_allowed",
	"unknown_permission",
	"user_required",
	"tenant_mismatch",
	"role_not_permitted",
	"not_owner",
]

default decision := {"allow": false, "reason": "no_grant"}

decision := {"allow": true, "reason": "allowed"} if {
	count(deny) == 0
	grant
}

decision := {"allow": false, "reason": reason} if {
	count(deny) > 0
	reason := [r | some r in reasons; r in deny][0]
}

service := data.ztbank.service

rbac := data.ztbank.rbac

# --- caller workload ---------------------------------------------------------------------

caller_name := data.ztbank.topology.by_id[input.caller]

deny contains "unknown_workload" if not caller_name

# The topology is the service-wide allowlist (the same one the mTLS handshake applies).
deny contains "workload_not_allowed" if {
	caller_name
	not service.name in data.ztbank.topology.workloads[caller_name].calls
}

# A route may narrow it further, e.g. ledger postings only from payment.
deny contains "workload_not_allowed" if {
	caller_name
	count(input.route.from) > 0
	not caller_name in input.route.from
}

# --- permission --------------------------------------------------------------------------

deny contains "unknown_permission" if not known_permission

known_permission if rbac.permissions[input.action]

# --- end user ----------------------------------------------------------------------------

has_user if input.user.id != ""

# Only routes declared workload-only, and only for permissions granted to workloads
# themselves, run without an end user.
workload_may_act if {
	input.route.workload_only == true
	input.action in rbac.workload_grants
}

deny contains "user_required" if {
	not has_user
	not workload_may_act
}

# --- tenant: user tenant = service tenant = resource tenant -------------------------------

deny contains "tenant_mismatch" if {
	has_user
	not user_in_service_tenant
}

deny contains "tenant_mismatch" if {
	input.resource
	not resource_in_service_tenant
}

# A user ID is spiffe://<tenant>/user/<id>; its trust domain must agree with the tenant
# claim, so a token that claims one tenant for another tenant's user is refused.
user_in_service_tenant if {
	input.user.tenant == service.tenant
	startswith(input.user.id, concat("", ["spiffe://", service.tenant, "/user/"]))
}

resource_in_service_tenant if input.resource.tenant == service.tenant

# --- roles -------------------------------------------------------------------------------

# A role grants a permission when it lists it and, for permissions that move money, the
# role may move money at all. The second condition keeps staff from moving money even if
# someone lists a money permission among their grants by mistake.
granting_roles contains role if {
	some role in input.user.roles
	input.action in rbac.roles[role].grants
	role_may_use(rbac.roles[role], rbac.permissions[input.action])
}

role_may_use(role, _) if role.may_move_money == true

role_may_use(_, perm) if perm.moves_money == false

deny contains "role_not_permitted" if {
	has_user
	count(granting_roles) == 0
}

# --- ownership: customers only their own resources ---------------------------------------

deny contains "not_owner" if {
	has_user
	input.resource
	count(granting_roles) > 0
	not may_act_on_resource
}

may_act_on_resource if {
	some role in granting_roles
	rbac.roles[role].scope == "tenant"
}

may_act_on_resource if input.resource.owner == input.user.id

# --- grants ------------------------------------------------------------------------------

grant if {
	has_user
	count(granting_roles) > 0
}

grant if {
	not has_user
	workload_may_act
}
