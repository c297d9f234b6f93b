# The AWS half of the EKS deployment (issue 17, ADR 0960): the eksctl ClusterConfig and the
# CloudFormation templates under deploy/aws/generated, generated from the topology with
# eksctl's and goformation's Go types, and checked offline (schema, IAM policies, exposure).
.PHONY: aws-generate aws-check
TEST_EXTRA += aws-check

aws-generate: ## regenerate deploy/aws/generated (eksctl ClusterConfig, CloudFormation) from the topology
	@cd deploy/check && GOWORK=off $(GO) run ./cmd/awsgen -out ../aws/generated

aws-check: ## offline AWS checks: templates decode and match goformation's CloudFormation schema; IAM policy, exposure and planted-fault tests; generated files current
	@cd deploy/check && GOWORK=off $(GO) test -count=1 ./aws/ ./cmd/awsgen/
