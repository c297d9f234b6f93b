package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/topology"
)

// The mutation checks: each breaks one thing the suite claims to check and requires the
// check to fail. They run offline (go test -short ./tests/e2e); TestIsolation repeats the
// route-table one against the routers the running services publish, and re-marks every
// real refusal as each other layer's.

// TestRouteDeletionIsCaught deletes each row of both route tables in turn and requires the
// route-coverage check to name that route. Offline the served set is the suite's own
// ServiceRoutes (the live run checks it equals what the routers serve).
func TestRouteDeletionIsCaught(t *testing.T) {
	served := servedFromTable(topo, ServiceRoutes, EdgeRoutes)
	if p := coverage(topo, workloadCalls, served, Generate(topo, LiveRoutes(), ServiceRoutes, EdgeRoutes)); len(p) > 0 {
		t.Fatalf("the unmutated tables already fail coverage:\n%s", strings.Join(p, "\n"))
	}
	checkRouteDeletionsCaught(t, served)
}

// checkRouteDeletionsCaught requires coverage to fail, naming the route, for every single-row
// deletion from Routes and ServiceRoutes.
func checkRouteDeletionsCaught(t *testing.T, served servedRoutes) {
	t.Helper()
	front := LiveRoutes()
	caught := 0
	for i, r := range front {
		cases := Generate(topo, slices.Delete(slices.Clone(front), i, i+1), ServiceRoutes, EdgeRoutes)
		name := r.Tenant + "/gateway " + r.Method + " " + r.Path
		if !mentions(coverage(topo, workloadCalls, served, cases), name) {
			t.Errorf("deleting %q from Routes went unnoticed by the route-coverage check", r.Name())
			continue
		}
		caught++
	}
	for i, r := range ServiceRoutes {
		cases := Generate(topo, front, slices.Delete(slices.Clone(ServiceRoutes), i, i+1), EdgeRoutes)
		if !mentions(coverage(topo, workloadCalls, served, cases), r.Name()) {
			t.Errorf("deleting %q from ServiceRoutes went unnoticed by the route-coverage check", r.Name())
			continue
		}
		caught++
	}
	for i, r := range EdgeRoutes {
		cases := Generate(topo, front, ServiceRoutes, slices.Delete(slices.Clone(EdgeRoutes), i, i+1))
		if !mentions(coverage(topo, workloadCalls, served, cases), r.Name()) {
			t.Errorf("deleting %q from EdgeRoutes went unnoticed by the route-coverage check", r.Name())
			continue
		}
		caught++
	}
	total := len(front) + len(ServiceRoutes) + len(EdgeRoutes)
	t.Logf("route-coverage check caught %d of %d single-row deletions (%d front-door rows, %d service rows, %d edge rows)",
		caught, total, len(front), len(ServiceRoutes), len(EdgeRoutes))
	if caught != total {
		t.Errorf("only %d of %d deletions caught", caught, total)
	}
}

func mentions(problems []string, route string) bool {
	for _, p := range problems {
		if strings.HasPrefix(p, route+":") {
			return true
		}
	}
	return false
}

// callsDiff compares the hand-written workload table with the topology both ways: an edge in
// one and not the other is reported, whichever side holds it.
func callsDiff(calls map[string][]string, topo *topology.Topology) []string {
	var out []string
	for _, w := range topo.Workloads {
		if _, ok := calls[w.Name]; !ok {
			out = append(out, fmt.Sprintf("%s: in topology.yaml, missing from workloadCalls", w.Name))
		}
		for _, to := range w.Calls {
			if !mayCall(calls, w.Name, to) {
				out = append(out, fmt.Sprintf("%s → %s: in topology.yaml, not in workloadCalls", w.Name, to))
			}
		}
	}
	for from, tos := range calls {
		if _, ok := topo.Workload(from); !ok {
			out = append(out, fmt.Sprintf("%s: in workloadCalls, not a workload of topology.yaml", from))
		}
		for _, to := range tos {
			if !topo.MayCall(from, to) {
				out = append(out, fmt.Sprintf("%s → %s: in workloadCalls, not in topology.yaml", from, to))
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestWorkloadCallsMatchTopology: the allowlists come from topology.yaml and the
// expectations from workloadCalls; they must agree edge for edge, so a wrong edge in
// topology.yaml fails here instead of flowing into both the allowlist and its expectation.
func TestWorkloadCallsMatchTopology(t *testing.T) {
	if diff := callsDiff(workloadCalls, topo); len(diff) > 0 {
		t.Errorf("workloadCalls and topology.yaml disagree:\n%s", strings.Join(diff, "\n"))
	}
}

// TestWorkloadCallFlipIsCaught flips every ordered pair of workloads in the hand-written
// table, one at a time (adding the edge if absent, removing it if present), and requires
// the cross-check to report exactly that edge, and the direct cases to change.
func TestWorkloadCallFlipIsCaught(t *testing.T) {
	base := Generate(topo, nil, ServiceRoutes, EdgeRoutes)
	flips := 0
	for _, from := range topo.Workloads {
		for _, to := range topo.Workloads {
			if from.Name == to.Name {
				continue
			}
			flipped := map[string][]string{}
			for k, v := range workloadCalls {
				flipped[k] = slices.Clone(v)
			}
			verb := "in workloadCalls, not in topology.yaml"
			if i := slices.Index(flipped[from.Name], to.Name); i >= 0 {
				flipped[from.Name] = slices.Delete(flipped[from.Name], i, i+1)
				verb = "in topology.yaml, not in workloadCalls"
			} else {
				flipped[from.Name] = append(flipped[from.Name], to.Name)
			}
			want := []string{fmt.Sprintf("%s → %s: %s", from.Name, to.Name, verb)}
			if diff := cmp.Diff(want, callsDiff(flipped, topo)); diff != "" {
				t.Errorf("flip %s → %s: cross-check mismatch (-want +got):\n%s", from.Name, to.Name, diff)
			}
			if changed := expectationsChanged(base, generate(topo, nil, ServiceRoutes, EdgeRoutes, flipped)); changed == 0 && servesAnything(to.Name) {
				t.Errorf("flip %s → %s changed no direct case's expectation", from.Name, to.Name)
			}
			flips++
		}
	}
	t.Logf("cross-check caught all %d single-edge flips", flips)
}

func servesAnything(workload string) bool {
	for _, r := range ServiceRoutes {
		if r.Workload == workload {
			return true
		}
	}
	return false
}

// expectationsChanged counts cases, matched by name, whose expectation differs (cases only
// one side generates count too).
func expectationsChanged(a, b []Case) int {
	want := map[string]Expectation{}
	for _, c := range a {
		want[c.Name()] = c.Want
	}
	n := 0
	for _, c := range b {
		w, ok := want[c.Name()]
		if !ok || w != c.Want {
			n++
		}
		delete(want, c.Name())
	}
	return n + len(want)
}

// TestLayerMarks drives each enforcement layer's real refusal code — the platform router
// with its peer allowlist, the internal-JWT verifier, the embedded policy, the problem
// categories the handlers use — through a service runtime (servertest, mesh mode), reads the
// layer from each answer's mark, and then re-marks each answer as every other layer's and
// requires the assertion to fail. It also shows why the status code cannot be the evidence:
// several layers answer with the same status.
func TestLayerMarks(t *testing.T) {
	h := servertest.New(t, "bank-b/ledger")
	rt, az := h.Runtime, h.Runtime.Authz
	r := rt.Router()
	r.With(rt.UserToken, az.Require("accounts:read", authz.From("bank-b/gateway"))).Get("/v1/accounts/{accountID}/balance",
		func(w http.ResponseWriter, req *http.Request) {
			switch chi.URLParam(req, "accountID") {
			case "missing": // as a handler answers when the tenant's database has no such row
				problem.Write(w, req, problem.Errorf(problem.ErrNotFound, "no such account"))
			case "overdrawn": // as a handler answers when a business rule refuses
				problem.Write(w, req, problem.Errorf(problem.ErrUnprocessable, "insufficient funds"))
			default:
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"balance":1}`))
			}
		})
	h.Serve(r)
	edge := httptest.NewRecorder() // the edge's refusal, written as services/edge/exchange writes it
	problem.Write(edge, httptest.NewRequest("GET", "/bank-b/v1/accounts", nil),
		problem.Refuse(problem.TypeEdge, problem.ErrUnauthenticated, "token missing", nil))

	send := func(workload, user, path string) Observed {
		res := h.Send(workload, "GET", path, "", bearer(h, user))
		return classifyParts(res.Status, res.Header.Get("Content-Type"), []byte(res.Body), "", nil)
	}
	for _, tc := range []struct {
		name string
		obs  Observed
		want Expectation
	}{
		{"allowed", send("bank-b/gateway", "bob@bank-b", "/v1/accounts/x/balance"), Expectation{200, LayerNone}},
		{"peer allowlist", send("bank-a/user", "bob@bank-b", "/v1/accounts/x/balance"), Expectation{403, LayerPeer}},
		{"internal JWT", send("bank-b/gateway", "", "/v1/accounts/x/balance"), Expectation{401, LayerJWT}},
		{"internal JWT of another tenant", send("bank-b/gateway", "alice@bank-a", "/v1/accounts/x/balance"), Expectation{401, LayerJWT}},
		{"policy (route's From)", send("bank-b/payment", "bob@bank-b", "/v1/accounts/x/balance"), Expectation{403, LayerPolicy}},
		{"tenant's data", send("bank-b/gateway", "bob@bank-b", "/v1/accounts/missing/balance"), Expectation{404, LayerNotFound}},
		{"business rule", send("bank-b/gateway", "bob@bank-b", "/v1/accounts/overdrawn/balance"), Expectation{422, LayerRule}},
		{"no such route", send("bank-b/gateway", "bob@bank-b", "/v1/nothing-here"), Expectation{404, LayerNoRoute}},
		{"edge", classifyParts(edge.Code, edge.Header().Get("Content-Type"), edge.Body.Bytes(), "", nil), Expectation{401, LayerEdge}},
		{"handshake", classifyParts(0, "", nil, alertBadCertificate, nil), Expectation{0, LayerMTLS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tc.obs.Expectation()); diff != "" {
				t.Fatalf("classify mismatch (-want +got):\n%s\nbody: %s", diff, tc.obs.Body)
			}
			if tc.want.Layer == LayerNone {
				return
			}
			for _, other := range refusingLayers() {
				if other == tc.want.Layer {
					continue
				}
				if re := remarked(tc.obs, other); cmp.Equal(tc.want, re.Expectation()) {
					t.Errorf("the %s refusal re-marked as %s still passes as %v", tc.want.Layer, other, re.Expectation())
				}
			}
		})
	}

	// Same status, different layers: the evidence has to be the mark.
	byStatus := map[int][]Layer{}
	for _, o := range []Observed{send("bank-a/user", "bob@bank-b", "/v1/accounts/x/balance"), send("bank-b/payment", "bob@bank-b", "/v1/accounts/x/balance"),
		send("bank-b/gateway", "", "/v1/accounts/x/balance"), send("bank-b/gateway", "bob@bank-b", "/v1/accounts/missing/balance"),
		send("bank-b/gateway", "bob@bank-b", "/v1/nothing-here"), classifyParts(edge.Code, edge.Header().Get("Content-Type"), edge.Body.Bytes(), "", nil)} {
		byStatus[o.Status] = append(byStatus[o.Status], o.Layer)
	}
	for _, status := range []int{401, 403, 404} {
		if len(byStatus[status]) < 2 {
			t.Errorf("status %d: layers %v; expected at least two layers to share it", status, byStatus[status])
		}
	}
}

func bearer(h *servertest.Harness, user string) http.Header {
	hdr := http.Header{}
	if user != "" {
		hdr.Set("Authorization", "Bearer "+h.Token(user))
	}
	return hdr
}
