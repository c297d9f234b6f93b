package aws

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/awslabs/goformation/v7/cloudformation/ec2"
	"github.com/awslabs/goformation/v7/cloudformation/rds"
	"github.com/awslabs/goformation/v7/cloudformation/s3"
	"github.com/awslabs/goformation/v7/cloudformation/secretsmanager"
	"github.com/ztbank/ztbank/libs/topology"
)

// wildcardResource lists, per role, the actions that may be granted on a resource containing
// "*", and why AWS leaves no narrower choice. Nothing else in the templates may use a
// wildcard resource in an Allow, and no Allow may use a wildcard action at all. Key policies
// and secret resource policies are exempt for "*" exactly: there it means the key or secret
// the policy is attached to.
var wildcardResource = map[string][]struct {
	why     string
	actions []string
}{
	LBControllerRoleName: {
		{"Describe/List/Get calls of EC2, Elastic Load Balancing, ACM, WAF (GetWebACLForResource) and Shield support no resource-level permissions",
			lbcStatement("ReadOnly")},
		{"the ALB, target group and security group do not exist yet when created; the aws:RequestTag/elbv2.k8s.aws/cluster condition limits creation to the controller's tagged resources",
			append(lbcStatement("CreateTagged"), lbcStatement("TagOnCreate")...)},
		{"the controller's ALBs, listeners, rules and groups are named at run time; the aws:ResourceTag/elbv2.k8s.aws/cluster condition limits changes to what it created",
			lbcStatement("ChangeOwn")},
		{"associating the web ACL also authorises on the ALB, whose name the controller picks at run time (the ACL itself is named by ARN)",
			lbcStatement("AttachWebACL")},
		{"iam:CreateServiceLinkedRole has no ARN before the role exists; the iam:AWSServiceName condition limits it to Elastic Load Balancing's role",
			lbcStatement("ServiceLinkedRole")},
	},
	// Bucket policies are keyed by the policy's logical ID.
	IDTrailBucketPolicy: {
		{"CloudTrail writes one object per delivery under AWSLogs/<this account>/, named at delivery time; aws:SourceArn pins the trail",
			[]string{"s3:PutObject"}},
	},
}

// lbcStatement returns the actions of the generated LB controller statement with sid, so
// the allowlist follows the policy without repeating it and an action added to the policy
// outside these statements is not covered.
func lbcStatement(sid string) []string {
	for _, st := range lbcPolicy().Statement {
		if st.Sid == sid {
			return st.Action
		}
	}
	return nil
}

// policyDoc is one policy found in a template.
type policyDoc struct {
	template string
	resource string // logical ID of the role, key, bucket policy or secret policy
	kind     string // identity, trust, key, bucket, secret
	owner    string // role name for identity and trust policies
	doc      PolicyDocument
}

// str renders a policy value (string or intrinsic) in one canonical form: Fn::Sub's string,
// ${ID.Attr} for GetAtt and ${ID} for Ref.
func str(v any) string {
	switch x := v.(type) {
	case string:
		// goformation's encoded intrinsic (the generator's own values)
		if raw, err := base64.StdEncoding.DecodeString(x); err == nil {
			var m map[string]any
			if json.Unmarshal(raw, &m) == nil && len(m) == 1 {
				return str(m)
			}
		}
		return x
	case map[string]any:
		if s, ok := x["Fn::Sub"].(string); ok {
			return s
		}
		if l, ok := x["Fn::GetAtt"].([]any); ok && len(l) == 2 {
			return fmt.Sprintf("${%v.%v}", l[0], l[1])
		}
		if r, ok := x["Ref"].(string); ok {
			return "${" + r + "}"
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func decodePolicy(v any) (PolicyDocument, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return PolicyDocument{}, err
	}
	// Strict: a field the checks do not model (NotAction, NotPrincipal, NotResource) would
	// otherwise pass unseen.
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var p PolicyDocument
	if err := d.Decode(&p); err != nil {
		return PolicyDocument{}, err
	}
	return p, nil
}

// policiesOf collects every policy document of the templates.
func policiesOf(docs []*Decoded) ([]policyDoc, []string) {
	var out []policyDoc
	var bad []string
	add := func(d *Decoded, id, kind, owner string, v any) {
		p, err := decodePolicy(v)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s %s: %s policy does not decode strictly: %v", d.Name, id, kind, err))
			return
		}
		out = append(out, policyDoc{template: d.Name, resource: id, kind: kind, owner: owner, doc: p})
	}
	for _, d := range docs {
		res, _ := d.Raw["Resources"].(map[string]any)
		for _, id := range slices.Sorted(maps.Keys(res)) {
			r, _ := res[id].(map[string]any)
			props, _ := r["Properties"].(map[string]any)
			switch r["Type"] {
			case "AWS::IAM::Role":
				name, _ := props["RoleName"].(string)
				add(d, id, "trust", name, props["AssumeRolePolicyDocument"])
				pl, _ := props["Policies"].([]any)
				for _, p := range pl {
					pm, _ := p.(map[string]any)
					add(d, id, "identity", name, pm["PolicyDocument"])
				}
			case "AWS::KMS::Key":
				add(d, id, "key", "", props["KeyPolicy"])
			case "AWS::S3::BucketPolicy":
				add(d, id, "bucket", id, props["PolicyDocument"])
			case "AWS::SecretsManager::ResourcePolicy":
				add(d, id, "secret", "", props["ResourcePolicy"])
			case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group":
				// Every grant must be on a role the checks below reason about.
				bad = append(bad, fmt.Sprintf("%s %s: %s is not checked; grant through a role", d.Name, id, r["Type"]))
			}
		}
	}
	return out, bad
}

// Check runs the policy and exposure checks over the decoded templates of topology t and
// returns one line per finding (none means they pass).
func Check(t *topology.Topology, docs []*Decoded) []string {
	pols, findings := policiesOf(docs)
	f := func(format string, a ...any) { findings = append(findings, fmt.Sprintf(format, a...)) }

	// 1. Wildcards and public principals.
	for _, p := range pols {
		for _, st := range p.doc.Statement {
			if st.Effect != "Allow" {
				continue // a Deny with wildcards only narrows
			}
			for k, v := range st.Principal {
				for _, pr := range asList(v) {
					if str(pr) == "*" {
						f("%s %s: %s policy statement %q allows principal %s:*, i.e. anyone", p.template, p.resource, p.kind, st.Sid, k)
					}
				}
			}
			if p.kind == "identity" && len(st.Resource) == 0 {
				f("%s %s: identity policy statement %q names no resource", p.template, p.resource, st.Sid)
			}
			for _, a := range st.Action {
				if strings.Contains(a, "*") {
					f("%s %s: %s policy statement %q has wildcard action %q", p.template, p.resource, p.kind, st.Sid, a)
				}
			}
			for _, r := range st.Resource {
				rs := str(r)
				if !strings.Contains(rs, "*") {
					continue
				}
				if rs == "*" && (p.kind == "key" || p.kind == "secret") {
					continue
				}
				for _, a := range st.Action {
					if !wildcardAllowed(p.owner, a) {
						f("%s %s: %s policy statement %q grants %s on wildcard resource %q with no reason on the allowlist", p.template, p.resource, p.kind, st.Sid, a, rs)
					}
				}
			}
		}
	}

	// 2. Database connect: exactly one role per DB user, and that role does nothing else.
	edge, _ := edgeWorkload(t)
	for _, w := range t.Workloads {
		if w.DBRole == "" {
			continue
		}
		tmpl := TenantTemplate(w.Tenant)
		want := tmpl + " " + str(DBUserARN(w.DBRole))
		var grants []string
		for _, p := range pols {
			if p.kind != "identity" {
				continue
			}
			for _, st := range p.doc.Statement {
				if st.Effect != "Allow" || !slices.Contains(st.Action, "rds-db:connect") {
					continue
				}
				for _, r := range st.Resource {
					if p.template+" "+str(r) == want {
						grants = append(grants, p.owner)
					}
				}
			}
		}
		if !slices.Equal(grants, []string{WorkloadRoleName(w)}) {
			f("%s: database user %s may be connected as by %v, want only %s", tmpl, w.DBRole, grants, WorkloadRoleName(w))
		}
		for _, p := range pols {
			if p.kind != "identity" || p.owner != WorkloadRoleName(w) {
				continue
			}
			for _, st := range p.doc.Statement {
				if st.Effect != "Allow" {
					continue
				}
				var rs []string
				for _, r := range st.Resource {
					rs = append(rs, str(r))
				}
				if !slices.Equal(st.Action, []string{"rds-db:connect"}) || !slices.Equal(rs, []string{str(DBUserARN(w.DBRole))}) || p.template != tmpl {
					f("%s %s: role %s may %v on %v; it may only rds-db:connect as %s in its own tenant's database", p.template, p.resource, p.owner, st.Action, rs, w.DBRole)
				}
			}
		}
	}

	// 3. Signing keys: only the edge role may read the secret or use its key.
	edgeRole := WorkloadRoleName(edge)
	secretRefs := []string{"*", "${" + IDSigningSecret + "}", "${" + IDSigningKey + ".Arn}"}
	for _, p := range pols {
		if p.kind != "identity" || p.owner == edgeRole {
			continue
		}
		for _, st := range p.doc.Statement {
			if st.Effect != "Allow" {
				continue
			}
			reads := slices.ContainsFunc(st.Action, func(a string) bool {
				return strings.HasPrefix(a, "secretsmanager:") || slices.Contains(kmsUseActions, a)
			})
			if !reads {
				continue
			}
			for _, r := range st.Resource {
				rs := str(r)
				if (p.template == PlatformTemplate && slices.Contains(secretRefs, rs)) || strings.Contains(rs, SigningKeySecretName) || strings.Contains(rs, "secret:") {
					f("%s %s: role %s may %v on %s; only %s may read or decrypt the signing keys", p.template, p.resource, p.owner, st.Action, rs, edgeRole)
				}
			}
		}
	}
	edgeARN := "${" + IDEdgeRole + ".Arn}"
	sawKey, sawDeny := false, false
	for _, p := range pols {
		if p.template != PlatformTemplate {
			continue
		}
		switch {
		case p.kind == "key" && p.resource == IDSigningKey:
			sawKey = true
			for _, st := range p.doc.Statement {
				if st.Effect != "Allow" || !slices.ContainsFunc(st.Action, func(a string) bool { return slices.Contains(kmsUseActions, a) }) {
					continue
				}
				var prs []string
				for k, v := range st.Principal {
					for _, pr := range asList(v) {
						prs = append(prs, k+":"+str(pr))
					}
				}
				if !slices.Equal(prs, []string{"AWS:" + edgeARN}) {
					f("%s %s: key policy statement %q lets %v use the signing key; only the edge role may", p.template, p.resource, st.Sid, prs)
				}
			}
		case p.kind == "secret":
			for _, st := range p.doc.Statement {
				cond := st.Condition["StringNotEquals"]["aws:PrincipalArn"]
				if st.Effect == "Deny" && str(st.Principal["AWS"]) == "*" && str(cond) == edgeARN &&
					slices.Contains(st.Action, "secretsmanager:GetSecretValue") && slices.Contains(st.Action, "secretsmanager:PutSecretValue") {
					sawDeny = true
				}
			}
		}
	}
	if !sawKey {
		f("%s: no key policy for %s", PlatformTemplate, IDSigningKey)
	}
	if !sawDeny {
		f("%s: the signing-key secret has no resource policy denying every principal but the edge role", PlatformTemplate)
	}

	// 4. Parameter Store: ESO's tenant reader roles read their own tenant's path only; ESO's
	// controller role may only assume them; nothing else reads parameters.
	for _, p := range pols {
		for _, st := range p.doc.Statement {
			if st.Effect != "Allow" {
				continue
			}
			for _, a := range st.Action {
				switch {
				case strings.HasPrefix(a, "ssm:") && p.kind == "identity":
					tenant := strings.TrimSuffix(strings.TrimPrefix(p.owner, Prefix+"-"), "-eso")
					if _, ok := t.Tenant(tenant); !ok || p.owner != ESOTenantRoleName(tenant) || p.template != TenantTemplate(tenant) {
						f("%s %s: role %s may %s; only a tenant's ESO reader role reads parameters", p.template, p.resource, p.owner, a)
						continue
					}
					prefix := "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter" + ParameterRoot + tenant + "/"
					for _, r := range st.Resource {
						if !strings.HasPrefix(str(r), prefix) {
							f("%s %s: ESO reader of %s may %s on %s, outside %s", p.template, p.resource, tenant, a, str(r), ParameterRoot+tenant+"/")
						}
					}
				case a == "sts:AssumeRole" && p.kind == "identity":
					if p.owner != ESOControllerRoleName {
						f("%s %s: role %s may assume roles", p.template, p.resource, p.owner)
						continue
					}
					var want []string
					for _, tn := range t.Tenants {
						want = append(want, str(roleARN(ESOTenantRoleName(tn.Name))))
					}
					var got []string
					for _, r := range st.Resource {
						got = append(got, str(r))
					}
					if !slices.Equal(got, want) {
						f("%s %s: ESO controller may assume %v, want exactly the tenant readers %v", p.template, p.resource, got, want)
					}
				}
			}
		}
	}

	// 5. Nothing public, everything encrypted, audit trail intact (typed resources).
	for _, d := range docs {
		for id, r := range d.Typed.Resources {
			switch x := r.(type) {
			case *rds.DBInstance:
				if x.PubliclyAccessible == nil || *x.PubliclyAccessible {
					f("%s %s: database is publicly accessible (PubliclyAccessible must be false)", d.Name, id)
				}
				if x.StorageEncrypted == nil || !*x.StorageEncrypted || x.KmsKeyId == nil {
					f("%s %s: database storage not encrypted with the template's KMS key", d.Name, id)
				}
				if x.EnableIAMDatabaseAuthentication == nil || !*x.EnableIAMDatabaseAuthentication {
					f("%s %s: IAM database authentication off", d.Name, id)
				}
				if !forcesTLS(d, id, x) {
					f("%s %s: parameter group does not set rds.force_ssl=1", d.Name, id)
				}
			case *s3.Bucket:
				pab := x.PublicAccessBlockConfiguration
				if pab == nil || !isTrue(pab.BlockPublicAcls) || !isTrue(pab.BlockPublicPolicy) || !isTrue(pab.IgnorePublicAcls) || !isTrue(pab.RestrictPublicBuckets) {
					f("%s %s: bucket public access block is not all true", d.Name, id)
				}
				if x.BucketEncryption == nil || len(x.BucketEncryption.ServerSideEncryptionConfiguration) == 0 ||
					x.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault == nil ||
					x.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault.SSEAlgorithm != "aws:kms" {
					f("%s %s: bucket not KMS-encrypted", d.Name, id)
				}
			case *ec2.SecurityGroup:
				for _, in := range x.SecurityGroupIngress {
					if (in.CidrIp != nil && *in.CidrIp == "0.0.0.0/0") || (in.CidrIpv6 != nil && *in.CidrIpv6 == "::/0") {
						f("%s %s: security group open to the internet", d.Name, id)
					}
				}
			case *secretsmanager.ResourcePolicy:
				if !isTrue(x.BlockPublicPolicy) {
					f("%s %s: secret resource policy does not block public policies", d.Name, id)
				}
			}
		}
	}
	for _, p := range pols {
		if p.kind != "bucket" {
			continue
		}
		tls := false
		for _, st := range p.doc.Statement {
			if st.Effect == "Deny" && str(st.Condition["Bool"]["aws:SecureTransport"]) == "false" && slices.Contains(st.Action, "s3:*") {
				tls = true
			}
			if st.Effect == "Allow" {
				for k, v := range st.Principal {
					for _, pr := range asList(v) {
						if k != "Service" || str(pr) != "cloudtrail.amazonaws.com" {
							f("%s %s: bucket policy statement %q allows %s:%s; only CloudTrail may write", p.template, p.resource, st.Sid, k, str(pr))
						}
					}
				}
			}
		}
		if !tls {
			f("%s %s: bucket policy does not deny non-TLS requests", p.template, p.resource)
		}
	}
	sort.Strings(findings)
	return slices.Compact(findings)
}

func wildcardAllowed(owner, action string) bool {
	for _, e := range wildcardResource[owner] {
		if e.why != "" && slices.Contains(e.actions, action) {
			return true
		}
	}
	return false
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

func isTrue(b *bool) bool { return b != nil && *b }

// forcesTLS follows the instance's DBParameterGroupName to a parameter group of the same
// template and checks rds.force_ssl there.
func forcesTLS(d *Decoded, dbID string, db *rds.DBInstance) bool {
	res, _ := d.Raw["Resources"].(map[string]any)
	r, _ := res[dbID].(map[string]any)
	props, _ := r["Properties"].(map[string]any)
	pg, _ := props["DBParameterGroupName"].(map[string]any)
	id, _ := pg["Ref"].(string)
	g, ok := d.Typed.Resources[id].(*rds.DBParameterGroup)
	if !ok || db.DBParameterGroupName == nil {
		return false
	}
	ps, _ := g.Parameters.(map[string]any)
	return str(ps["rds.force_ssl"]) == "1"
}
