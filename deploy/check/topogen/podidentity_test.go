package topogen_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztbank/ztbank/libs/topology"
	"sigs.k8s.io/yaml"
)

// podIdentityConfig is the part of eksctl's ClusterConfig (eksctl.io/v1alpha5) the generator
// writes, decoded strictly.
type podIdentityConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string `json:"name"`
		Region string `json:"region"`
	} `json:"metadata"`
	Addons []struct {
		Name string `json:"name"`
	} `json:"addons"`
	IAM struct {
		PodIdentityAssociations []struct {
			Namespace          string `json:"namespace"`
			ServiceAccountName string `json:"serviceAccountName"`
			RoleName           string `json:"roleName"`
			PermissionPolicy   struct {
				Version   string `json:"Version"`
				Statement []struct {
					Effect   string   `json:"Effect"`
					Action   []string `json:"Action"`
					Resource []string `json:"Resource"`
				} `json:"Statement"`
			} `json:"permissionPolicy"`
		} `json:"podIdentityAssociations"`
	} `json:"iam"`
}

// checkPodIdentity returns what is wrong with the eksctl Pod Identity config: every DB workload
// has exactly one association, and its only permission is rds-db:connect as its own DB user on
// its own tenant's instance.
func checkPodIdentity(t *testing.T, body []byte) []string {
	t.Helper()
	var cfg podIdentityConfig
	if err := yaml.UnmarshalStrict(body, &cfg); err != nil {
		return []string{err.Error()}
	}
	tp := topology.Default()
	var problems []string
	seen := map[string]int{}
	for _, a := range cfg.IAM.PodIdentityAssociations {
		var w topology.Workload
		found := false
		for _, cand := range tp.Workloads {
			if cand.Namespace == a.Namespace && cand.Service == a.ServiceAccountName {
				w, found = cand, true
			}
		}
		if !found {
			continue // platform add-ons such as External Secrets
		}
		seen[w.Name]++
		if w.DBRole == "" {
			problems = append(problems, w.Name+" has AWS permissions but no database")
			continue
		}
		tenantVar := "${RDS_RESOURCE_ID_" + strings.ToUpper(strings.ReplaceAll(w.Tenant, "-", "_")) + "}"
		for _, st := range a.PermissionPolicy.Statement {
			if st.Effect != "Allow" || len(st.Action) != 1 || st.Action[0] != "rds-db:connect" {
				problems = append(problems, w.Name+": permission beyond rds-db:connect")
			}
			for _, r := range st.Resource {
				if !strings.HasPrefix(r, "arn:aws:rds-db:") || !strings.HasSuffix(r, ":dbuser:"+tenantVar+"/"+w.DBRole) {
					problems = append(problems, w.Name+": resource "+r+" is not its own DB user "+w.DBRole+" on "+tenantVar)
				}
			}
		}
	}
	for _, w := range tp.Workloads {
		if w.DBRole != "" && seen[w.Name] != 1 {
			problems = append(problems, w.Name+": want exactly one Pod Identity association")
		}
	}
	return problems
}

func TestPodIdentityScopedToOwnDBUser(t *testing.T) {
	body, err := os.ReadFile(filepath.Join(generatedDir, "eks", "eksctl-pod-identity.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkPodIdentity(t, body) {
		t.Error(p)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"another service's user", "}/user_svc", "}/account_svc", "is not its own DB user user_svc"},
		{"wildcard user", "}/ledger_svc", "}/*", "is not its own DB user ledger_svc"},
		{"other tenant's instance", "${RDS_RESOURCE_ID_BANK_B}/payment_svc", "${RDS_RESOURCE_ID_BANK_A}/payment_svc", "is not its own DB user payment_svc"},
		{"broader action", "- rds-db:connect", "- rds-db:*", "permission beyond rds-db:connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(body), tc.old) {
				t.Fatalf("config no longer contains %q", tc.old)
			}
			got := checkPodIdentity(t, []byte(strings.Replace(string(body), tc.old, tc.new, 1)))
			for _, g := range got {
				if strings.Contains(g, tc.want) {
					return
				}
			}
			t.Errorf("no problem containing %q; got %q", tc.want, got)
		})
	}
}
