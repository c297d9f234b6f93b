package aws

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/deploy/check/awsnames"
	"github.com/ztbank/ztbank/deploy/check/manifest"
	"github.com/ztbank/ztbank/deploy/check/topogen"
	"github.com/ztbank/ztbank/libs/topology"
)

// The two generators meet at External Secrets: topogen writes, per tenant namespace, a
// SecretStore naming an IAM role and ExternalSecrets naming Parameter Store keys; awsgen's
// CloudFormation creates the roles and decides what each may read. The checks below derive
// the expected role from the CloudFormation grants (not from awsnames), so a rename on either
// side alone is caught.

const eksOverlay = "../../k8s/overlays/eks"

var roleARNPattern = regexp.MustCompile(`^arn:aws:iam::([^:]+):role/([^/:]+)$`)

// parameterARN is how the templates spell a Parameter Store name in a policy resource.
func parameterARN(name string) string {
	return "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter" + name
}

// esoWiring returns one line per mismatch between the External Secrets objects of a
// rendering (objs) and the templates' policies (pols). account and region are what the
// SecretStores must carry: the overlay's settings, or topogen's placeholder before kustomize.
func esoWiring(topo *topology.Topology, objs []manifest.Object, pols []policyDoc, account, region string) []string {
	var out []string
	f := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }

	// From CloudFormation: which role may read each tenant's path, which keys it may read,
	// and whether ESO's controller role may become it.
	controller := str(roleARN(ESOControllerRoleName))
	reader := map[string]string{}           // tenant -> role name
	granted := map[string]map[string]bool{} // role name -> parameter ARNs it may GetParameter
	assumable := map[string]bool{}          // role ARNs the controller may assume
	trustsController := map[string]bool{}   // role names whose trust admits the controller
	for _, p := range pols {
		for _, st := range p.doc.Statement {
			if st.Effect != "Allow" {
				continue
			}
			switch {
			case p.kind == "identity" && slices.Contains(st.Action, "ssm:GetParameter"):
				for _, r := range st.Resource {
					if granted[p.owner] == nil {
						granted[p.owner] = map[string]bool{}
					}
					granted[p.owner][str(r)] = true
				}
			case p.kind == "identity" && p.owner == ESOControllerRoleName && slices.Contains(st.Action, "sts:AssumeRole"):
				for _, r := range st.Resource {
					assumable[str(r)] = true
				}
			case p.kind == "trust" && slices.Contains(st.Action, "sts:AssumeRole"):
				if pr, ok := st.Principal["AWS"]; ok && str(pr) == controller {
					trustsController[p.owner] = true
				}
			}
		}
	}
	for _, tn := range topo.Tenants {
		prefix := parameterARN(awsnames.TenantParameterPath(tn.Name))
		var roles []string
		for role, arns := range granted {
			for arn := range arns {
				if strings.HasPrefix(arn, prefix) {
					roles = append(roles, role)
					break
				}
			}
		}
		slices.Sort(roles)
		if len(roles) != 1 {
			f("CloudFormation: want exactly one role reading %s, got %v", awsnames.TenantParameterPath(tn.Name), roles)
			continue
		}
		reader[tn.Name] = roles[0]
		if !assumable[str(roleARN(roles[0]))] || !trustsController[roles[0]] {
			f("CloudFormation: %s reads %s but ESO's controller role cannot assume it", roles[0], awsnames.TenantParameterPath(tn.Name))
		}
	}

	// From the rendering: each tenant namespace's SecretStore assumes that role, and each
	// ExternalSecret reads through its own namespace's store keys that role may read.
	stores := map[string]string{} // "ns/name" -> role name
	perNamespace := map[string]int{}
	type esSpec struct {
		Spec struct {
			SecretStoreRef struct{ Name, Kind string } `json:"secretStoreRef"`
			Data           []struct {
				RemoteRef struct{ Key string } `json:"remoteRef"`
			} `json:"data"`
		} `json:"spec"`
	}
	var secrets []manifest.Object
	for _, o := range objs {
		switch o.Kind {
		case "ClusterSecretStore":
			f("%s: a cluster-wide store lets every namespace read through its role; use a SecretStore per tenant", o.ID())
		case "SecretStore":
			v, err := manifest.Decode(o)
			if err != nil {
				f("%v", err)
				continue
			}
			aws := v.(*manifest.SecretStore).Spec.Provider.AWS
			if aws == nil {
				f("%s: not an AWS store", o.ID())
				continue
			}
			want, isTenant := reader[o.Namespace]
			if _, ok := topo.Tenant(o.Namespace); !ok || !isTenant {
				f("%s: not in a tenant namespace with a reader role", o.ID())
				continue
			}
			perNamespace[o.Namespace]++
			m := roleARNPattern.FindStringSubmatch(aws.Role)
			if m == nil {
				f("%s: role %q is not an IAM role ARN", o.ID(), aws.Role)
				continue
			}
			stores[o.Namespace+"/"+o.Name] = m[2]
			if m[2] != want {
				f("%s assumes %s; the role CloudFormation lets read %s is %s", o.ID(), m[2], awsnames.TenantParameterPath(o.Namespace), want)
			}
			if m[1] != account {
				f("%s: role in account %q, want %q", o.ID(), m[1], account)
			}
			if aws.Service != "ParameterStore" || aws.Region != region {
				f("%s: service %q in region %q, want ParameterStore in %q", o.ID(), aws.Service, aws.Region, region)
			}
			if aws.Auth != nil {
				f("%s: sets auth; ESO must use its own Pod Identity credentials to assume the role", o.ID())
			}
		case "ExternalSecret":
			secrets = append(secrets, o)
		}
	}
	for _, tn := range topo.Tenants {
		if perNamespace[tn.Name] != 1 {
			f("namespace %s: want one SecretStore, got %d", tn.Name, perNamespace[tn.Name])
		}
	}
	keys := 0
	for _, o := range secrets {
		var es esSpec
		if err := json.Unmarshal(o.JSON, &es); err != nil {
			f("%s: %v", o.ID(), err)
			continue
		}
		ref := es.Spec.SecretStoreRef
		role, ok := stores[o.Namespace+"/"+ref.Name]
		if (ref.Kind != "" && ref.Kind != "SecretStore") || !ok {
			f("%s: reads through %s/%s, not a SecretStore of its namespace", o.ID(), ref.Kind, ref.Name)
			continue
		}
		path := awsnames.TenantParameterPath(o.Namespace)
		for _, d := range es.Spec.Data {
			keys++
			if !strings.HasPrefix(d.RemoteRef.Key, path) || strings.Contains(d.RemoteRef.Key, "..") {
				f("%s: key %s is outside its tenant's path %s", o.ID(), d.RemoteRef.Key, path)
			}
			if !granted[role][parameterARN(d.RemoteRef.Key)] {
				f("%s: key %s is not granted to %s", o.ID(), d.RemoteRef.Key, role)
			}
		}
	}
	if keys == 0 {
		f("no ExternalSecret reads any key")
	}
	return out
}

// settings reads KEY=value lines of the eks overlay's settings.env.
func settings(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(eksOverlay, "settings.env"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

func topogenEKS(t *testing.T, topo *topology.Topology) []manifest.Object {
	t.Helper()
	files, err := topogen.Files(topo)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(files, func(f topogen.File) bool { return f.Name == "eks/externalsecrets.yaml" })
	if i < 0 {
		t.Fatal("topogen writes no eks/externalsecrets.yaml")
	}
	objs, err := manifest.Parse(files[i].Body)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// Every SecretStore names exactly the ESO reader role CloudFormation grants its tenant's
// path, and every ExternalSecret reads, through its namespace's store, keys under that path
// that the role may read: in topogen's output for the committed topology and for one with a
// third tenant, and in the built eks overlay (where settings.env fills account and region).
func TestSecretStoresMatchCloudFormation(t *testing.T) {
	topo := topology.Default()
	pols, bad := policiesOf(decodeAll(t, committed(t)))
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	t.Run("topogen", func(t *testing.T) {
		for _, p := range esoWiring(topo, topogenEKS(t, topo), pols, topogen.EKSPlaceholder, topogen.EKSPlaceholder) {
			t.Error(p)
		}
	})
	t.Run("third tenant", func(t *testing.T) {
		topo3 := withTenant(t, "bank-q")
		files, err := Files(topo3)
		if err != nil {
			t.Fatal(err)
		}
		pols3, _ := policiesOf(decodeAll(t, files))
		for _, p := range esoWiring(topo3, topogenEKS(t, topo3), pols3, topogen.EKSPlaceholder, topogen.EKSPlaceholder) {
			t.Error(p)
		}
	})
	t.Run("eks overlay", func(t *testing.T) {
		objs, err := manifest.Build(eksOverlay)
		if err != nil {
			t.Fatal(err)
		}
		s := settings(t)
		for _, p := range esoWiring(topo, objs, pols, s["AWS_ACCOUNT_ID"], s["AWS_REGION"]) {
			t.Error(p)
		}
	})
}

// Planted mismatches on either side are each caught.
func TestSecretStoreMismatchesAreCaught(t *testing.T) {
	topo := topology.Default()
	a, b := topo.Tenants[0].Name, topo.Tenants[1].Name
	pols, _ := policiesOf(decodeAll(t, committed(t)))
	base, err := manifest.Build(eksOverlay)
	if err != nil {
		t.Fatal(err)
	}
	s := settings(t)
	var dbw topology.Workload
	for _, w := range topo.Workloads {
		if w.Tenant == a && w.DBRole != "" {
			dbw = w
			break
		}
	}
	// edit returns base with the object kind ns/name changed by fn.
	edit := func(t *testing.T, kind, ns, name string, fn func(m map[string]any)) []manifest.Object {
		t.Helper()
		out := slices.Clone(base)
		for i, o := range out {
			if o.Kind != kind || o.Namespace != ns || o.Name != name {
				continue
			}
			m, err := o.Map()
			if err != nil {
				t.Fatal(err)
			}
			fn(m)
			if out[i].JSON, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
			return out
		}
		t.Fatalf("no %s %s/%s in the eks rendering", kind, ns, name)
		return nil
	}
	awsOf := func(m map[string]any) map[string]any {
		return m["spec"].(map[string]any)["provider"].(map[string]any)["aws"].(map[string]any)
	}
	firstKey := func(m map[string]any) map[string]any {
		return m["spec"].(map[string]any)["data"].([]any)[0].(map[string]any)["remoteRef"].(map[string]any)
	}
	// editPols changes the policies the templates grant.
	editPols := func(fn func(p *policyDoc)) []policyDoc {
		var out []policyDoc
		for _, p := range pols {
			p.doc.Statement = slices.Clone(p.doc.Statement)
			for i := range p.doc.Statement {
				p.doc.Statement[i].Resource = slices.Clone(p.doc.Statement[i].Resource)
			}
			fn(&p)
			out = append(out, p)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		objs []manifest.Object
		pols []policyDoc
		want string
	}{
		{"store assumes another tenant's reader", edit(t, "SecretStore", a, topogen.SecretStoreName, func(m map[string]any) {
			awsOf(m)["role"] = awsnames.RoleARN(s["AWS_ACCOUNT_ID"], awsnames.ESOTenantRoleName(b))
		}), pols, "assumes " + awsnames.ESOTenantRoleName(b) + "; the role CloudFormation lets read " + awsnames.TenantParameterPath(a) + " is " + awsnames.ESOTenantRoleName(a)},
		{"store assumes ESO's own role", edit(t, "SecretStore", a, topogen.SecretStoreName, func(m map[string]any) {
			awsOf(m)["role"] = awsnames.RoleARN(s["AWS_ACCOUNT_ID"], awsnames.ESOControllerRoleName)
		}), pols, "assumes " + awsnames.ESOControllerRoleName},
		{"account not replaced", edit(t, "SecretStore", b, topogen.SecretStoreName, func(m map[string]any) {
			awsOf(m)["role"] = awsnames.RoleARN(topogen.EKSPlaceholder, awsnames.ESOTenantRoleName(b))
		}), pols, `role in account "` + topogen.EKSPlaceholder + `"`},
		{"key in another tenant's path", edit(t, "ExternalSecret", a, topogen.DBSecretName(dbw), func(m map[string]any) {
			firstKey(m)["key"] = awsnames.TenantParameterName(b, awsnames.ParamDBHost)
		}), pols, "is outside its tenant's path " + awsnames.TenantParameterPath(a)},
		{"key escapes the path", edit(t, "ExternalSecret", a, topogen.DBSecretName(dbw), func(m map[string]any) {
			firstKey(m)["key"] = awsnames.TenantParameterPath(a) + "../" + b + "/db/host"
		}), pols, "is outside its tenant's path"},
		{"reads through a ClusterSecretStore", edit(t, "ExternalSecret", a, topogen.DBCASecret, func(m map[string]any) {
			m["spec"].(map[string]any)["secretStoreRef"] = map[string]any{"name": topogen.SecretStoreName, "kind": "ClusterSecretStore"}
		}), pols, "not a SecretStore of its namespace"},
		{"CloudFormation renames the reader", base, editPols(func(p *policyDoc) {
			if p.owner == awsnames.ESOTenantRoleName(a) {
				p.owner = awsnames.Prefix + "-" + a + "-parameters"
			}
		}), "the role CloudFormation lets read " + awsnames.TenantParameterPath(a) + " is " + awsnames.Prefix + "-" + a + "-parameters"},
		{"CloudFormation no longer grants the CA", base, editPols(func(p *policyDoc) {
			if p.owner != awsnames.ESOTenantRoleName(a) || p.kind != "identity" {
				return
			}
			for i := range p.doc.Statement {
				p.doc.Statement[i].Resource = slices.DeleteFunc(p.doc.Statement[i].Resource, func(r any) bool {
					return strings.HasSuffix(str(r), awsnames.ParamDBCABundle)
				})
			}
		}), "key " + awsnames.TenantParameterName(a, awsnames.ParamDBCABundle) + " is not granted to " + awsnames.ESOTenantRoleName(a)},
		{"controller may not assume the reader", base, editPols(func(p *policyDoc) {
			if p.kind == "trust" && p.owner == awsnames.ESOTenantRoleName(b) {
				p.doc.Statement[0].Principal = map[string]any{"AWS": str(roleARN(LBControllerRoleName))}
			}
		}), awsnames.ESOTenantRoleName(b) + " reads " + awsnames.TenantParameterPath(b) + " but ESO's controller role cannot assume it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := esoWiring(topo, tc.objs, tc.pols, s["AWS_ACCOUNT_ID"], s["AWS_REGION"])
			if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, tc.want) }) {
				t.Errorf("planted %s not caught (want %q); findings:\n%s", tc.name, tc.want, strings.Join(got, "\n"))
			}
		})
	}
}
