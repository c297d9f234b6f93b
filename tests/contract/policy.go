package contract

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Pod is where a Kubernetes container runs, for the network and mesh policy checks.
type Pod struct {
	Namespace      string
	Labels         map[string]string
	ServiceAccount string
	// Mesh is true when Istio injects a sidecar (namespace label istio-injection=enabled and
	// no sidecar.istio.io/inject: "false"), so AuthorizationPolicies apply to it.
	Mesh bool
}

type labelSelector struct {
	MatchLabels      map[string]string `json:"matchLabels"`
	MatchExpressions []struct {
		Key      string   `json:"key"`
		Operator string   `json:"operator"`
		Values   []string `json:"values"`
	} `json:"matchExpressions"`
}

func (s *labelSelector) matches(labels map[string]string) bool {
	if s == nil {
		return false
	}
	if !selects(s.MatchLabels, labels) {
		return false
	}
	for _, e := range s.MatchExpressions {
		v, has := labels[e.Key]
		switch e.Operator {
		case "In":
			if !has || !slices.Contains(e.Values, v) {
				return false
			}
		case "NotIn":
			if has && slices.Contains(e.Values, v) {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		}
	}
	return true
}

type npPeer struct {
	PodSelector       *labelSelector `json:"podSelector"`
	NamespaceSelector *labelSelector `json:"namespaceSelector"`
	IPBlock           *struct {
		CIDR string `json:"cidr"`
	} `json:"ipBlock"`
}

type npPort struct {
	Protocol string          `json:"protocol"`
	Port     json.RawMessage `json:"port"`
}

type npRule struct {
	To    []npPeer `json:"to"`
	From  []npPeer `json:"from"`
	Ports []npPort `json:"ports"`
}

type networkPolicy struct {
	Metadata struct {
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		PodSelector labelSelector `json:"podSelector"`
		PolicyTypes []string      `json:"policyTypes"`
		Ingress     []npRule      `json:"ingress"`
		Egress      []npRule      `json:"egress"`
	} `json:"spec"`
}

func (np networkPolicy) types() []string {
	if len(np.Spec.PolicyTypes) > 0 {
		return np.Spec.PolicyTypes
	}
	t := []string{"Ingress"}
	if len(np.Spec.Egress) > 0 {
		t = append(t, "Egress")
	}
	return t
}

// policies are a rendering's NetworkPolicies and Istio AuthorizationPolicies, with the
// namespace labels their selectors match.
type policies struct {
	network     []networkPolicy
	authz       []authorizationPolicy
	nsLabels    map[string]map[string]string
	trustDomain string
}

// peerMatches reports whether peer (in a policy of namespace policyNS) selects pod q.
func (ps policies) peerMatches(peer npPeer, policyNS string, q *Pod) bool {
	if q == nil {
		// Outside the cluster: only an ipBlock can match.
		return peer.IPBlock != nil
	}
	if peer.IPBlock != nil {
		return false
	}
	if peer.NamespaceSelector != nil {
		labels, ok := ps.nsLabels[q.Namespace]
		if !ok {
			// A namespace the rendering does not create (a prerequisite's) still carries
			// the label Kubernetes sets on every namespace.
			labels = map[string]string{"kubernetes.io/metadata.name": q.Namespace}
		}
		if !peer.NamespaceSelector.matches(labels) {
			return false
		}
	} else if q.Namespace != policyNS {
		return false
	}
	if peer.PodSelector != nil {
		return peer.PodSelector.matches(q.Labels)
	}
	return true
}

func portMatches(ports []npPort, port int, named map[string]int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != "" && p.Protocol != "TCP" {
			continue
		}
		if len(p.Port) == 0 {
			return true
		}
		var n int
		if json.Unmarshal(p.Port, &n) == nil && n == port {
			return true
		}
		var name string
		if json.Unmarshal(p.Port, &name) == nil && named[name] == port {
			return true
		}
	}
	return false
}

// networkAllows reports whether the NetworkPolicies let from (a pod) reach to (a pod, or nil
// for an address outside the cluster) on port, and if not, which side refuses.
func (ps policies) networkAllows(from *Pod, to *Pod, port int, toPorts map[string]int) string {
	isolated, allowed := false, false
	for _, np := range ps.network {
		if np.Metadata.Namespace != from.Namespace || !np.Spec.PodSelector.matchesOrEmpty(from.Labels) || !slices.Contains(np.types(), "Egress") {
			continue
		}
		isolated = true
		for _, rule := range np.Spec.Egress {
			if !portMatches(rule.Ports, port, toPorts) {
				continue
			}
			if len(rule.To) == 0 || slices.ContainsFunc(rule.To, func(p npPeer) bool { return ps.peerMatches(p, np.Metadata.Namespace, to) }) {
				allowed = true
			}
		}
	}
	if isolated && !allowed {
		return "the source's NetworkPolicies allow no egress there"
	}
	if to == nil {
		return ""
	}
	isolated, allowed = false, false
	for _, np := range ps.network {
		if np.Metadata.Namespace != to.Namespace || !np.Spec.PodSelector.matchesOrEmpty(to.Labels) || !slices.Contains(np.types(), "Ingress") {
			continue
		}
		isolated = true
		for _, rule := range np.Spec.Ingress {
			if !portMatches(rule.Ports, port, toPorts) {
				continue
			}
			if len(rule.From) == 0 || slices.ContainsFunc(rule.From, func(p npPeer) bool { return ps.peerMatches(p, np.Metadata.Namespace, from) }) {
				allowed = true
			}
		}
	}
	if isolated && !allowed {
		return "the target's NetworkPolicies admit no ingress from the source"
	}
	return ""
}

// matchesOrEmpty: an empty podSelector selects every pod of the namespace.
func (s labelSelector) matchesOrEmpty(labels map[string]string) bool {
	return s.matches(labels)
}

type apOperation struct {
	Ports   []string `json:"ports"`
	Methods []string `json:"methods"`
	Paths   []string `json:"paths"`
}

type apRule struct {
	From []struct {
		Source struct {
			Principals        []string `json:"principals"`
			Namespaces        []string `json:"namespaces"`
			RequestPrincipals []string `json:"requestPrincipals"`
		} `json:"source"`
	} `json:"from"`
	To []struct {
		Operation apOperation `json:"operation"`
	} `json:"to"`
}

type authorizationPolicy struct {
	Metadata struct {
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		Selector *labelSelector `json:"selector"`
		Action   string         `json:"action"`
		Rules    []apRule       `json:"rules"`
	} `json:"spec"`
}

// meshAllows evaluates the ALLOW AuthorizationPolicies of the target for a request from
// from (its principal when it is in the mesh) on port, with method and path when the dial
// has one fixed request ("" for a peer's whole API), and whether it carries a user's JWT.
func (ps policies) meshAllows(from, to *Pod, port int, d Dial) string {
	if to == nil || !to.Mesh {
		return ""
	}
	var applicable []authorizationPolicy
	for _, ap := range ps.authz {
		if ap.Metadata.Namespace != to.Namespace || (ap.Spec.Action != "" && ap.Spec.Action != "ALLOW") {
			continue
		}
		if ap.Spec.Selector != nil && !ap.Spec.Selector.matches(to.Labels) {
			continue
		}
		applicable = append(applicable, ap)
	}
	if len(applicable) == 0 {
		return ""
	}
	principal := ""
	if from.Mesh {
		sa := from.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		principal = fmt.Sprintf("%s/ns/%s/sa/%s", ps.trustDomain, from.Namespace, sa)
	}
	for _, ap := range applicable {
		for _, rule := range ap.Spec.Rules {
			if ruleMatches(rule, principal, from.Namespace, port, d) {
				return ""
			}
		}
	}
	who := principal
	if who == "" {
		who = "a caller outside the mesh"
	}
	return fmt.Sprintf("no AuthorizationPolicy rule on the target admits %s on port %d", who, port)
}

func ruleMatches(rule apRule, principal, ns string, port int, d Dial) bool {
	fromOK := len(rule.From) == 0
	for _, f := range rule.From {
		s := f.Source
		if len(s.Principals) > 0 && !slices.ContainsFunc(s.Principals, func(p string) bool { return globMatch(p, principal) && principal != "" }) {
			continue
		}
		if len(s.Namespaces) > 0 && !slices.Contains(s.Namespaces, ns) {
			continue
		}
		if len(s.RequestPrincipals) > 0 && !d.UserToken {
			continue
		}
		fromOK = true
	}
	if !fromOK {
		return false
	}
	if len(rule.To) == 0 {
		return true
	}
	for _, t := range rule.To {
		op := t.Operation
		if len(op.Ports) > 0 && !slices.Contains(op.Ports, strconv.Itoa(port)) {
			continue
		}
		if d.Path != "" {
			if len(op.Paths) > 0 && !slices.ContainsFunc(op.Paths, func(p string) bool { return globMatch(p, d.Path) }) {
				continue
			}
			if len(op.Methods) > 0 && !slices.Contains(op.Methods, d.Method) {
				continue
			}
		} else if len(op.Paths) > 0 || len(op.Methods) > 0 {
			// A rule limited to some paths does not admit a peer's whole API.
			continue
		}
		return true
	}
	return false
}

// globMatch is Istio's string match: exact, "*", prefix "x*" or suffix "*x".
func globMatch(pattern, s string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(s, strings.TrimSuffix(pattern, "*"))
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(s, strings.TrimPrefix(pattern, "*"))
	}
	return pattern == s
}

// readPolicies collects the policies and namespace labels of a rendering.
func readPolicies(objs []Object, trustDomain string) (policies, error) {
	ps := policies{nsLabels: map[string]map[string]string{}, trustDomain: trustDomain}
	for _, o := range objs {
		switch o.Kind {
		case "Namespace":
			l := map[string]string{"kubernetes.io/metadata.name": o.Metadata.Name}
			for k, v := range o.Metadata.Labels {
				l[k] = v
			}
			ps.nsLabels[o.Metadata.Name] = l
		case "NetworkPolicy":
			var np networkPolicy
			if err := json.Unmarshal(o.JSON, &np); err != nil {
				return ps, fmt.Errorf("NetworkPolicy %s: %w", o.key(), err)
			}
			ps.network = append(ps.network, np)
		case "AuthorizationPolicy":
			var ap authorizationPolicy
			if err := json.Unmarshal(o.JSON, &ap); err != nil {
				return ps, fmt.Errorf("AuthorizationPolicy %s: %w", o.key(), err)
			}
			ps.authz = append(ps.authz, ap)
		}
	}
	return ps, nil
}
