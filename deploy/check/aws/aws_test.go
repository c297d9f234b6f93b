package aws

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/weaveworks/eksctl/pkg/apis/eksctl.io/v1alpha5"
	"github.com/ztbank/ztbank/libs/topology"
	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

const generatedDir = "../../aws/generated"

// decodeAll decodes the CloudFormation files of a generation.
func decodeAll(t *testing.T, files []File) []*Decoded {
	t.Helper()
	var out []*Decoded
	for _, f := range files {
		if !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		d, err := Decode(f.Name, f.Body)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		out = append(out, d)
	}
	return out
}

func committed(t *testing.T) []File {
	t.Helper()
	var files []File
	err := filepath.WalkDir(generatedDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(generatedDir, p)
		files = append(files, File{Name: filepath.ToSlash(rel), Body: b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// The committed files are what the generator makes from the committed topology.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	want, err := Files(topology.Default())
	if err != nil {
		t.Fatal(err)
	}
	got := committed(t)
	slices.SortFunc(want, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(got, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	names := func(fs []File) []string {
		var n []string
		for _, f := range fs {
			n = append(n, f.Name)
		}
		return n
	}
	if d := cmp.Diff(names(want), names(got)); d != "" {
		t.Fatalf("deploy/aws/generated files differ (-generated +committed); run make aws-generate:\n%s", d)
	}
	for i := range want {
		if !bytes.Equal(want[i].Body, got[i].Body) {
			t.Errorf("%s is stale; run make aws-generate:\n%s", want[i].Name, cmp.Diff(string(want[i].Body), string(got[i].Body)))
		}
	}
}

// Every committed template decodes into goformation's typed resources, validates against the
// schema goformation carries, and passes the policy checks; report what it holds.
func TestCommittedTemplatesValidateAndPass(t *testing.T) {
	start := time.Now()
	docs := decodeAll(t, committed(t))
	t.Logf("decoded and schema-validated %d templates in %s", len(docs), time.Since(start).Round(time.Millisecond))
	for _, d := range docs {
		t.Logf("%s: %d resources", d.Name, len(d.Typed.Resources))
	}
	if len(docs) != 2+len(topology.Default().Tenants) {
		t.Fatalf("%d templates, want audit + platform + one per tenant", len(docs))
	}
	if f := Check(topology.Default(), docs); len(f) > 0 {
		t.Fatalf("policy findings:\n%s", strings.Join(f, "\n"))
	}
}

// The ClusterConfig decodes strictly into eksctl's types and passes eksctl's own validation
// once the runbook's variables are substituted.
func TestClusterConfigIsValidEksctl(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(generatedDir, ClusterConfig))
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte(EnvClusterName), []byte("ztbank"))
	b = bytes.ReplaceAll(b, []byte(EnvRegion), []byte("eu-west-1"))
	var cfg api.ClusterConfig
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		t.Fatalf("strict decode into eksctl ClusterConfig: %v", err)
	}
	api.SetClusterConfigDefaults(&cfg)
	if err := api.ValidateClusterConfig(&cfg); err != nil {
		t.Fatalf("eksctl validation: %v", err)
	}
	for i, ng := range cfg.ManagedNodeGroups {
		if err := api.SetManagedNodeGroupDefaults(ng, cfg.Metadata, false); err != nil {
			t.Fatal(err)
		}
		if err := api.ValidateManagedNodeGroup(i, ng); err != nil {
			t.Fatalf("eksctl nodegroup validation: %v", err)
		}
	}
	if !slices.ContainsFunc(cfg.Addons, func(a *api.Addon) bool { return a.Name == api.PodIdentityAgentAddon }) {
		t.Fatal("no eks-pod-identity-agent add-on")
	}
	// A misspelt field must fail the strict decode (the generated file is not just YAML).
	bad := bytes.Replace(b, []byte("privateNetworking:"), []byte("privateNetworkin:"), 1)
	if err := yaml.UnmarshalStrict(bad, &api.ClusterConfig{}); err == nil {
		t.Fatal("misspelt eksctl field decoded")
	}
}

// withTenant returns the committed topology plus a tenant named name, a copy of the first
// tenant's workloads (ports moved) that the edge and the ingress call.
func withTenant(t *testing.T, name string) *topology.Topology {
	t.Helper()
	var doc map[string]any
	if err := yaml3.Unmarshal(topology.Embedded(), &doc); err != nil {
		t.Fatal(err)
	}
	tenants := doc["tenants"].([]any)
	first := tenants[0].(map[string]any)["name"].(string)
	tenants = append(tenants, map[string]any{"name": name, "database": strings.ReplaceAll(name, "-", "_")})
	doc["tenants"] = tenants
	var added []any
	ws := doc["workloads"].([]any)
	for _, x := range ws {
		w := x.(map[string]any)
		if calls, ok := w["calls"].([]any); ok && slices.Contains(calls, any(first+"/gateway")) && w["tenant"] == nil {
			w["calls"] = append(calls, name+"/gateway")
		}
		if w["tenant"] != first {
			continue
		}
		c := map[string]any{}
		for k, v := range w {
			c[k] = v
		}
		c["tenant"] = name
		c["name"] = strings.Replace(w["name"].(string), first+"/", name+"/", 1)
		if calls, ok := w["calls"].([]any); ok {
			var nc []any
			for _, cl := range calls {
				nc = append(nc, strings.Replace(cl.(string), first+"/", name+"/", 1))
			}
			c["calls"] = nc
		}
		for _, k := range []string{"listen", "health"} {
			if a, ok := w[k].(string); ok {
				h, p, _ := net.SplitHostPort(a)
				port, _ := strconv.Atoi(p)
				c[k] = net.JoinHostPort(h, strconv.Itoa(port+300))
			}
		}
		added = append(added, c)
	}
	doc["workloads"] = append(ws, added...)
	b, err := yaml3.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Parse("three-tenants.yaml", b)
	if err != nil {
		t.Fatalf("topology with %s: %v", name, err)
	}
	return topo
}

// A tenant added to the topology gets its database, roles, associations and parameters with
// no other edit, and the policy checks pass for all three tenants.
func TestNewTenantAppearsInTemplates(t *testing.T) {
	// Not bank-c: the README's example tenant may already be in the topology (make tenant).
	const name = "bank-q"
	topo := withTenant(t, name)
	files, err := Files(topo)
	if err != nil {
		t.Fatal(err)
	}
	docs := decodeAll(t, files)
	if f := Check(topo, docs); len(f) > 0 {
		t.Fatalf("policy findings with three tenants:\n%s", strings.Join(f, "\n"))
	}
	var tmpl *Decoded
	for _, d := range docs {
		if d.Name == TenantTemplate(name) {
			tmpl = d
		}
	}
	if tmpl == nil {
		t.Fatalf("no %s among %d templates", TenantTemplate(name), len(docs))
	}
	var got []string
	for id, r := range tmpl.Typed.Resources {
		got = append(got, id+" "+r.AWSCloudFormationType())
	}
	slices.Sort(got)
	want := []string{
		"AccountRole AWS::IAM::Role", "AccountRoleAssociation AWS::EKS::PodIdentityAssociation",
		"Database AWS::RDS::DBInstance", "DatabaseKey AWS::KMS::Key", "DatabaseParameters AWS::RDS::DBParameterGroup",
		"DatabaseSecurityGroup AWS::EC2::SecurityGroup", "DatabaseSubnets AWS::RDS::DBSubnetGroup",
		"ExternalSecretsReaderRole AWS::IAM::Role", "HostParameter AWS::SSM::Parameter", "RegionParameter AWS::SSM::Parameter",
		"UserRole AWS::IAM::Role", "UserRoleAssociation AWS::EKS::PodIdentityAssociation",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("%s resources (-want +got):\n%s", name, d)
	}
	body := string(files[slices.IndexFunc(files, func(f File) bool { return f.Name == TenantTemplate(name) })].Body)
	for _, s := range []string{`"DBName": "bank_q"`, `"/ztbank/bank-q/db/host"`, `"ztbank-bank-q-user"`, `"Namespace": "bank-q"`, `/user_svc"`} {
		if !strings.Contains(body, s) {
			t.Errorf("%s lacks %s", TenantTemplate(name), s)
		}
	}
	platform := string(files[slices.IndexFunc(files, func(f File) bool { return f.Name == PlatformTemplate })].Body)
	if !strings.Contains(platform, "role/"+ESOTenantRoleName(name)) {
		t.Errorf("the ESO controller may not assume %s", ESOTenantRoleName(name))
	}
}

// mutate applies edit to the decoded JSON of one committed template and returns the
// findings of decoding and checking the result: each planted fault must be caught.
func TestPlantedFaultsAreCaught(t *testing.T) {
	topo := topology.Default()
	base := committed(t)
	tenant := TenantTemplate(topo.Tenants[0].Name)
	other := TenantTemplate(topo.Tenants[1].Name)
	var dbw topology.Workload
	for _, w := range topo.Workloads {
		if w.Tenant == topo.Tenants[0].Name && w.DBRole != "" {
			dbw = w
			break
		}
	}
	props := func(doc map[string]any, id string) map[string]any {
		return doc["Resources"].(map[string]any)[id].(map[string]any)["Properties"].(map[string]any)
	}
	firstStatement := func(doc map[string]any, id string) map[string]any {
		return props(doc, id)["Policies"].([]any)[0].(map[string]any)["PolicyDocument"].(map[string]any)["Statement"].([]any)[0].(map[string]any)
	}
	for _, tc := range []struct {
		name, file, want string
		edit             func(doc map[string]any)
	}{
		{"wildcard action", PlatformTemplate, `wildcard action "secretsmanager:*"`, func(doc map[string]any) {
			firstStatement(doc, IDEdgeRole)["Action"] = []any{"secretsmanager:*"}
		}},
		{"public bucket", AuditTemplate, "bucket public access block is not all true", func(doc map[string]any) {
			props(doc, IDTrailBucket)["PublicAccessBlockConfiguration"].(map[string]any)["BlockPublicPolicy"] = false
		}},
		{"bucket readable by anyone", AuditTemplate, "allows principal AWS:*", func(doc map[string]any) {
			st := props(doc, IDTrailBucketPolicy)["PolicyDocument"].(map[string]any)["Statement"].([]any)
			props(doc, IDTrailBucketPolicy)["PolicyDocument"].(map[string]any)["Statement"] = append(st, map[string]any{
				"Effect": "Allow", "Principal": map[string]any{"AWS": "*"}, "Action": []any{"s3:GetObject"},
				"Resource": []any{map[string]any{"Fn::Sub": "${TrailBucket.Arn}/*"}},
			})
		}},
		{"wildcard resource on a workload role", tenant, "on wildcard resource", func(doc map[string]any) {
			firstStatement(doc, WorkloadRoleID(dbw))["Resource"] = []any{"*"}
		}},
		{"workload connects as another user", tenant, "may only rds-db:connect as", func(doc map[string]any) {
			firstStatement(doc, WorkloadRoleID(dbw))["Resource"] = []any{map[string]any{"Fn::Sub": "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:${Database.DbiResourceId}/someone_else"}}
		}},
		{"another role decrypts the signing key", PlatformTemplate, "only the edge role may", func(doc map[string]any) {
			st := props(doc, IDSigningKey)["KeyPolicy"].(map[string]any)["Statement"].([]any)
			st[1].(map[string]any)["Principal"] = map[string]any{"AWS": []any{map[string]any{"Fn::GetAtt": []any{IDEdgeRole, "Arn"}}, map[string]any{"Fn::GetAtt": []any{IDLBCRole, "Arn"}}}}
		}},
		{"another role reads the secret", PlatformTemplate, "only " + WorkloadRoleName(mustEdge(t, topo)) + " may read", func(doc map[string]any) {
			s := firstStatement(doc, IDLBCRole)
			s["Action"] = append(s["Action"].([]any), "secretsmanager:GetSecretValue")
		}},
		{"secret policy admits everyone", PlatformTemplate, "no resource policy denying", func(doc map[string]any) {
			props(doc, IDSigningPolicy)["ResourcePolicy"].(map[string]any)["Statement"].([]any)[0].(map[string]any)["Condition"] = map[string]any{}
		}},
		{"ESO reads another tenant", tenant, "outside", func(doc map[string]any) {
			firstStatement(doc, IDESOTenantRole)["Resource"] = []any{map[string]any{"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/ztbank/" + topo.Tenants[1].Name + "/db/host"}}
		}},
		{"public database", other, "publicly accessible", func(doc map[string]any) {
			props(doc, IDDatabase)["PubliclyAccessible"] = true
		}},
		{"TLS not forced", other, "rds.force_ssl", func(doc map[string]any) {
			props(doc, IDDatabaseParams)["Parameters"] = map[string]any{"rds.force_ssl": "0"}
		}},
		{"database open to the internet", other, "open to the internet", func(doc map[string]any) {
			props(doc, IDDatabaseSG)["SecurityGroupIngress"] = []any{map[string]any{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "CidrIp": "0.0.0.0/0"}}
		}},
		{"bucket allows plain HTTP", AuditTemplate, "does not deny non-TLS", func(doc map[string]any) {
			st := props(doc, IDTrailBucketPolicy)["PolicyDocument"].(map[string]any)["Statement"].([]any)
			props(doc, IDTrailBucketPolicy)["PolicyDocument"].(map[string]any)["Statement"] = st[:2]
		}},
		{"identity statement without resource", tenant, "names no resource", func(doc map[string]any) {
			delete(firstStatement(doc, WorkloadRoleID(dbw)), "Resource")
		}},
		{"unmodelled policy field", PlatformTemplate, "does not decode strictly", func(doc map[string]any) {
			firstStatement(doc, IDEdgeRole)["NotResource"] = []any{"arn:aws:s3:::x"}
		}},
		{"misspelt property", other, "does not match the CloudFormation schema", func(doc map[string]any) {
			props(doc, IDDatabase)["PubliclyAccesible"] = false
		}},
		{"wrong property type", other, "does not match the CloudFormation schema", func(doc map[string]any) {
			props(doc, IDDatabase)["BackupRetentionPeriod"] = []any{7}
		}},
		{"dangling reference", other, `Fn::GetAtt on unknown resource "Databse"`, func(doc map[string]any) {
			props(doc, "HostParameter")["Value"] = map[string]any{"Fn::GetAtt": []any{"Databse", "Endpoint.Address"}}
		}},
		{"unknown resource type", AuditTemplate, "AWS::S3::Buckett", func(doc map[string]any) {
			doc["Resources"].(map[string]any)[IDTrailBucket].(map[string]any)["Type"] = "AWS::S3::Buckett"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var docs []*Decoded
			var findings []string
			for _, f := range base {
				if !strings.HasSuffix(f.Name, ".json") {
					continue
				}
				body := f.Body
				if f.Name == tc.file {
					var doc map[string]any
					if err := json.Unmarshal(body, &doc); err != nil {
						t.Fatal(err)
					}
					tc.edit(doc)
					body, _ = json.Marshal(doc)
				}
				d, err := Decode(f.Name, body)
				if err != nil {
					findings = append(findings, err.Error())
					continue
				}
				docs = append(docs, d)
			}
			if len(findings) == 0 {
				findings = Check(topo, docs)
			}
			all := strings.Join(findings, "\n")
			if !strings.Contains(all, tc.want) {
				t.Fatalf("planted %s not caught (want %q); findings:\n%s", tc.name, tc.want, all)
			}
		})
	}
}

func mustEdge(t *testing.T, topo *topology.Topology) topology.Workload {
	w, ok := edgeWorkload(topo)
	if !ok {
		t.Fatal("no edge")
	}
	return w
}

// Every allowlisted wildcard names why.
func TestWildcardAllowlistNamesWhy(t *testing.T) {
	for owner, es := range wildcardResource {
		for _, e := range es {
			if len(e.why) < 40 || len(e.actions) == 0 {
				t.Errorf("%s: allowlist entry %q has no real reason or no actions", owner, fmt.Sprint(e.actions))
			}
		}
	}
}
