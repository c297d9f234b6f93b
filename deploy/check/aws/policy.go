package aws

import "github.com/awslabs/goformation/v7/cloudformation"

// PolicyDocument is an IAM policy (identity, trust, key or resource policy). goformation
// types policy documents as interface{}; these structs keep the generator's policies typed
// and are what the checker decodes every policy in a template back into.
type PolicyDocument struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one policy statement. Resource entries and principal ARNs are strings or
// CloudFormation intrinsic objects ({"Fn::Sub": ...}, {"Fn::GetAtt": [...]}, {"Ref": ...}).
type Statement struct {
	Sid       string                    `json:"Sid,omitempty"`
	Effect    string                    `json:"Effect"`
	Principal map[string]any            `json:"Principal,omitempty"`
	Action    []string                  `json:"Action"`
	Resource  []any                     `json:"Resource,omitempty"`
	Condition map[string]map[string]any `json:"Condition,omitempty"`
}

const policyVersion = "2012-10-17"

// sub, getAtt and ref are intrinsics for the interface{}-typed policy fields, in goformation's
// encoded form: Template.JSON() runs goformation's intrinsic processor, which turns encoded
// intrinsics back into objects but would evaluate plain {"Fn::Sub": ...} maps with made-up
// pseudo-parameter values.
func sub(s string) any { return cloudformation.Sub(s) }

func getAtt(id, attr string) any { return cloudformation.GetAtt(id, attr) }

func ref(id string) any { return cloudformation.Ref(id) }

func roleARN(name string) any {
	return sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/" + name)
}

func accountRoot() any { return sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root") }

// podIdentityTrust lets EKS Pod Identity hand the role to exactly one namespace/service
// account of this account's clusters: the agent sets these session tags itself.
func podIdentityTrust(namespace, serviceAccount string) PolicyDocument {
	return PolicyDocument{Version: policyVersion, Statement: []Statement{{
		Sid:       "PodIdentity",
		Effect:    "Allow",
		Principal: map[string]any{"Service": "pods.eks.amazonaws.com"},
		Action:    []string{"sts:AssumeRole", "sts:TagSession"},
		Condition: map[string]map[string]any{
			"StringEquals": {
				"aws:SourceAccount":                         sub("${AWS::AccountId}"),
				"aws:RequestTag/kubernetes-namespace":       namespace,
				"aws:RequestTag/kubernetes-service-account": serviceAccount,
			},
		},
	}}}
}

// keyAdminActions administer a KMS key without using it: no Decrypt, Encrypt, GenerateDataKey,
// ReEncrypt or CreateGrant, so the account root (and through it IAM admins) can manage and
// delete a key but not read what it protects.
var keyAdminActions = []string{
	"kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:GetKeyRotationStatus",
	"kms:EnableKeyRotation", "kms:DisableKey", "kms:EnableKey", "kms:ListResourceTags",
	"kms:TagResource", "kms:UntagResource", "kms:UpdateKeyDescription", "kms:CreateAlias",
	"kms:DeleteAlias", "kms:UpdateAlias", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
}

// kmsUseActions are the actions that reveal or produce data under a key.
var kmsUseActions = []string{"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateGrant"}

func keyAdminStatement() Statement {
	return Statement{
		Sid: "KeyAdministration", Effect: "Allow",
		Principal: map[string]any{"AWS": accountRoot()},
		Action:    keyAdminActions,
		// In a key policy "*" is the key the policy is attached to.
		Resource: []any{"*"},
	}
}
