#!/bin/sh
# Registers the compose agent and every ztbank workload (one entry per compose service label,
# SPIFFE IDs as in libs/topology/topology.yaml; a deploy/check test keeps them in step).
set -eu
S=/opt/spire/bin/spire-server
TD=spiffe://ztbank.local
AGENT=$TD/compose/agent

until $S healthcheck >/dev/null 2>&1; do sleep 1; done
$S token generate -spiffeID "$AGENT" -ttl 3600 | sed 's/^Token: //' > /run/spire/join/token

register() { # <compose service> <spiffe path>
  $S entry show -spiffeID "$TD/$2" | grep -q "$TD/$2" && return 0
  $S entry create -parentID "$AGENT" -spiffeID "$TD/$2" -x509SVIDTTL 3600 \
    -selector "docker:label:com.docker.compose.service:$1"
}

register edge           ns/ztbank-system/sa/edge
register bank-a-gateway ns/bank-a/sa/gateway
register bank-a-user    ns/bank-a/sa/user
register bank-a-account ns/bank-a/sa/account
register bank-b-gateway ns/bank-b/sa/gateway
register bank-b-payment ns/bank-b/sa/payment
register bank-b-ledger  ns/bank-b/sa/ledger
