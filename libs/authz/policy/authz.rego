# Package ztbank.authz decides whether one request may proceed. It is evaluated in-process by
# libs/authz, once per route-level check and once per resource-level check; the Go side
# supplies the input (see libs/authz/input.go) and the data:
#
#   data.ztbank.rbac      permissions, roles and what each role grants (policy/data.json)
#   data.ztbank.topology  workloads, their SPIFFE IDs and who may call whom (topology.yaml),
#                         with `callers` indexing the edges by callee
#   data.ztbank.service   the workload this engine runs in: name, tenant, SPIFFE ID
#
# `decision` is a chain of checks in a fixed order: who is calling, what they ask for, for
# whom, then on what. The first check that fails names the deny reason; a request is allowed
# only when every check passes and a grant applies. Anything else, including input the
# checks do not recognise, falls through to the default deny.
#
# The chain is one complete rule rather than a set of deny rules on purpose: a partial set
# is re-evaluated for each membership test, which made every decision several times slower.
package ztbank.authz

default decision := {"allow": false, "reason": "no_grant"}

decision := {"allow": false, "reason": "unknown_workload"} if {
	not caller_name
} else := {"allow": false, "reason": "workload_not_allowed"} if {
	not caller_may_call_service
} else := {"allow": false, "reason": "workload_not_allowed"} if {
	not route_admits_caller
} else := {"allow": false, "reason": "unknown_permission"} if {
	not known_permission
} else := {"allow": false, "reason": "user_required"} if {
	not has_user
	not workload_may_act
} else := {"allow": false, "reason": "tenant_mismatch"} if {
	has_user
	not user_in_service_tenant
} else := {"allow": false, "reason": "tenant_mismatch"} if {
	not resource_in_service_tenant
} else := {"allow": false, "reason": "role_not_permitted"} if {
	has_user
	not has_grant
} else := {"allow": false, "reason": "not_owner"} if {
	not may_act_on_resource
} else := {"allow": true, "reason": "allowed"} if {
	grant
}

service := data.ztbank.service

rbac := data.ztbank.rbac

# --- caller workload ---------------------------------------------------------------------

caller_name := data.ztbank.topology.by_id[input.caller]

# The topology is the service-wide allowlist (the same one the mTLS handshake applies).
caller_may_call_service if data.ztbank.topology.callers[service.name][caller_name]

# A route may narrow it further, e.g. ledger postings only from payment. The Go side always
# sends `from`; an input without it is malformed and refused.
route_admits_caller if count(input.route.from) == 0

route_admits_caller if caller_name in input.route.from

# --- permission --------------------------------------------------------------------------

known_permission if rbac.permissions[input.action]

# --- end user ----------------------------------------------------------------------------

has_user if input.user.id != ""

# Only routes declared workload-only, and only for permissions granted to workloads
# themselves, run without an end user.
workload_may_act if {
	input.route.workload_only == true
	input.action in rbac.workload_grants
}

# --- tenant: user tenant = service tenant = resource tenant -------------------------------

# A user ID is spiffe://<tenant>/user/<id>; its trust domain must agree with the tenant
# claim, so a token that claims one tenant for another tenant's user is refused.
user_in_service_tenant if {
	input.user.tenant == service.tenant
	startswith(input.user.id, service.user_prefix)
}

resource_in_service_tenant if not input.resource

resource_in_service_tenant if input.resource.tenant == service.tenant

# --- roles -------------------------------------------------------------------------------

# A role grants a permission when it lists it and, for permissions that move money, the
# role may move money at all: the two bodies are "money-moving role" and "permission moves
# no money". This keeps staff from moving money even if someone lists a money permission
# among their grants by mistake. (Inlined rather than a helper function: each call cost
# several microseconds per decision.)
granted_by(role) if {
	input.action in rbac.roles[role].grants
	rbac.roles[role].may_move_money == true
}

granted_by(role) if {
	input.action in rbac.roles[role].grants
	rbac.permissions[input.action].moves_money == false
}

# has_grant and tenant_scoped ask "is there such a role" directly: building the set of
# granting roles and counting it cost a third of every decision.
has_grant if {
	some role in input.user.roles
	granted_by(role)
}

tenant_scoped if {
	some role in input.user.roles
	granted_by(role)
	rbac.roles[role].scope == "tenant"
}


# --- ownership: customers only their own resources ---------------------------------------

may_act_on_resource if not input.resource

# A workload acting without a user has no ownership to check; tenant was checked above.
may_act_on_resource if not has_user

may_act_on_resource if tenant_scoped

may_act_on_resource if input.resource.owner == input.user.id

# --- grants ------------------------------------------------------------------------------

grant if {
	has_user
	has_grant
}

grant if {
	not has_user
	workload_may_act
}
