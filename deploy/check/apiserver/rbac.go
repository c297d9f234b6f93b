package apiserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ztbank/ztbank/deploy/check/manifest"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Access is one permission a service account needs: verb on group/resource (optionally one
// named object) in namespace ("" for cluster-wide).
type Access struct {
	Namespace, Group, Resource, Subresource, Name, Verb string
	// Why names the component and document that needs it.
	Why string
}

func (a Access) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Group != "" {
		r += "." + a.Group
	}
	if a.Name != "" {
		r += " " + a.Name
	}
	where := "cluster-wide"
	if a.Namespace != "" {
		where = "in " + a.Namespace
	}
	return fmt.Sprintf("%s %s %s (%s)", a.Verb, r, where, a.Why)
}

// AccessFromRules expands RBAC rules (as in an upstream ClusterRole or Role) into one Access
// per group, resource and verb, in namespace.
func AccessFromRules(rules []rbacv1.PolicyRule, namespace, why string) []Access {
	var out []Access
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				resource, sub, _ := strings.Cut(res, "/")
				for _, v := range r.Verbs {
					names := r.ResourceNames
					if len(names) == 0 {
						names = []string{""}
					}
					for _, n := range names {
						out = append(out, Access{Namespace: namespace, Group: g, Resource: resource, Subresource: sub, Name: n, Verb: v, Why: why})
					}
				}
			}
		}
	}
	return out
}

// UpstreamRules reads the rules of the RBAC object in file (relative to the module root of
// module, pinned in pinDir).
func UpstreamRules(ctx context.Context, pinDir, module, file string) ([]rbacv1.PolicyRule, error) {
	dir, err := ModuleDir(ctx, pinDir, module)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return nil, fmt.Errorf("read upstream RBAC: %w", err)
	}
	objs, err := manifest.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%s: %d objects, want one Role or ClusterRole", file, len(objs))
	}
	v, err := manifest.Decode(objs[0])
	if err != nil {
		return nil, err
	}
	switch r := v.(type) {
	case *rbacv1.ClusterRole:
		return r.Rules, nil
	case *rbacv1.Role:
		return r.Rules, nil
	}
	return nil, fmt.Errorf("%s: %T is not a Role or ClusterRole", file, v)
}

// Denied asks the API server's authorizer (RBAC, as applied) whether the service account
// namespace/name may do each access, and returns the ones it may not.
func Denied(ctx context.Context, cs kubernetes.Interface, namespace, name string, want []Access) ([]Access, error) {
	var denied []Access
	for _, a := range want {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + namespace + ":" + name,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: a.Namespace, Group: a.Group, Resource: a.Resource,
				Subresource: a.Subresource, Name: a.Name, Verb: a.Verb,
			},
		}}
		got, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("SubjectAccessReview %s: %w", a, err)
		}
		if !got.Status.Allowed {
			denied = append(denied, a)
		}
	}
	return denied, nil
}
