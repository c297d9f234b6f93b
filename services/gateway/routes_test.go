package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/topology"
)

// seen is what a backend received from the gateway.
type seen struct {
	Method, Path, Query, Auth, Caller, Key, Spoofed, Body string
}

// backend records each request and answers with a marker naming itself, so a test can
// tell which backend answered and what reached it.
type backend struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	got  []seen
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.got = append(b.got, seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Auth: r.Header.Get("Authorization"),
			Caller: r.Header.Get("X-Forwarded-Client-Cert"), Key: r.Header.Get("Idempotency-Key"),
			Spoofed: r.Header.Get("X-Spiffe-ID"), Body: string(body)})
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(http.StatusTeapot) // any status passes through unchanged
		io.WriteString(w, `{"backend":"`+name+`"}`)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// stack is the gateway of one tenant with its real router, policy engine and token
// verifier, and the real mesh peer client (which forwards the user's token) to recording
// backends.
type stack struct {
	*servertest.Harness
	router   chi.Routes
	backends map[string]*backend // by service name
}

func newStack(t *testing.T, tenant string) stack {
	t.Helper()
	return newStackIn(t, topology.Default(), tenant)
}

// newStackIn is newStack for a tenant of topo.
func newStackIn(t *testing.T, topo *topology.Topology, tenant string) stack {
	t.Helper()
	h := servertest.NewIn(t, topo, tenant+"/gateway")
	s := stack{Harness: h, backends: map[string]*backend{}}
	var peers []*server.Peer
	for _, name := range h.Runtime.Self.Calls {
		w, _ := h.Topo.Workload(name)
		b := newBackend(t, w.Service)
		s.backends[w.Service] = b
		peers = append(peers, &server.Peer{Name: name, BaseURL: b.srv.URL, Client: h.PeerClient()})
	}
	handler, err := NewServer(h.Runtime, peers)
	if err != nil {
		t.Fatal(err)
	}
	s.router = handler.(chi.Routes)
	h.Serve(handler)
	return s
}

// do sends a request as workload with token (raw, or "") and extra headers.
func (s stack) do(workload, token, method, path string, header map[string]string, body string) (servertest.Response, string) {
	s.T.Helper()
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		hdr.Set(k, v)
	}
	r := s.Send(workload, method, path, body, hdr)
	return r, r.Body
}

func TestForwarding(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tenant   string
		user     string
		method   string
		path     string
		body     string
		backend  string // service that must receive it; "" for refused at the gateway
		wantCode int
	}{
		{"me to user service", "bank-a", "alice@bank-a", "GET", "/v1/users/me", "", "user", http.StatusTeapot},
		{"user's accounts to user service", "bank-a", "alice@bank-a", "GET", "/v1/users/" + demo.UserID("alice@bank-a").String() + "/accounts", "", "user", http.StatusTeapot},
		{"account to account service", "bank-a", "alice@bank-a", "GET", "/v1/accounts/" + demo.AccountID("alice@bank-a", "current").String(), "", "account", http.StatusTeapot},
		{"open account to user service", "bank-a", "carol@bank-a", "POST", "/v1/accounts", `{"owner_id":"x"}`, "user", http.StatusTeapot},
		{"customer cannot open, refused at the gateway", "bank-a", "alice@bank-a", "POST", "/v1/accounts", `{}`, "", http.StatusForbidden},
		{"other tenant's token", "bank-a", "bob@bank-b", "GET", "/v1/users/me", "", "", http.StatusUnauthorized},
		{"no token", "bank-a", "", "GET", "/v1/users/me", "", "", http.StatusUnauthorized},
		{"ledger accounts", "bank-b", "bob@bank-b", "GET", "/v1/accounts", "", "ledger", http.StatusTeapot},
		{"entries with paging", "bank-b", "bob@bank-b", "GET", "/v1/accounts/" + demo.AccountID("bob@bank-b", "current").String() + "/entries?limit=2&cursor=9", "", "ledger", http.StatusTeapot},
		{"payment", "bank-b", "bob@bank-b", "POST", "/v1/payments", `{"amount":1}`, "payment", http.StatusTeapot},
		{"staff payment refused at the gateway", "bank-b", "erin@bank-b", "POST", "/v1/payments", `{}`, "", http.StatusForbidden},
		{"bank-a route absent on bank-b", "bank-b", "bob@bank-b", "GET", "/v1/users/me", "", "", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, tc.tenant)
			tok := ""
			if tc.user != "" {
				tok = s.Token(tc.user)
			}
			resp, body := s.do("edge", tok, tc.method, tc.path,
				map[string]string{"Idempotency-Key": "k-1", "X-Spiffe-ID": "spiffe://ztbank.local/ns/bank-a/sa/gateway"}, tc.body)
			if diff := cmp.Diff(tc.wantCode, resp.Status); diff != "" {
				t.Fatalf("%s %s status mismatch (-want +got):\n%s\nbody: %s", tc.method, tc.path, diff, body)
			}
			for svc, b := range s.backends {
				got := b.requests()
				if svc != tc.backend {
					if len(got) != 0 {
						t.Errorf("backend %s received %+v, want nothing", svc, got)
					}
					continue
				}
				self, _ := s.Topo.Workload(tc.tenant + "/gateway")
				path, query, _ := strings.Cut(tc.path, "?")
				want := []seen{{Method: tc.method, Path: path, Query: query, Auth: "Bearer " + tok,
					Caller: "URI=" + self.ID.String(), Key: "k-1", Body: tc.body}}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("backend %s requests mismatch (-want +got):\n%s", svc, diff)
				}
				if !strings.Contains(body, `"backend":"`+svc+`"`) || resp.Header.Get("Idempotent-Replayed") != "true" {
					t.Errorf("response not relayed from %s: %q headers %v", svc, body, resp.Header)
				}
			}
		})
	}
}

// TestOnlyEdgeMayCall: the gateway's allowlist admits the edge alone.
func TestOnlyEdgeMayCall(t *testing.T) {
	s := newStack(t, "bank-b")
	resp, _ := s.do("bank-b/payment", s.Token("bob@bank-b"), "GET", "/v1/accounts", nil, "")
	if resp.Status != http.StatusForbidden {
		t.Errorf("payment calling the gateway: status %d, want 403", resp.Status)
	}
	if n := len(s.backends["ledger"].requests()); n != 0 {
		t.Errorf("ledger received %d requests", n)
	}
}

// TestOpenAPIMatchesRoutes: every API route of each tenant's gateway is in its OpenAPI
// document and every operation of the document is a route, so the document cannot drift.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	for _, tc := range []struct {
		name, tenant, customer string
		topo                   *topology.Topology
	}{
		{"bank-a", "bank-a", "alice@bank-a", topology.Default()},
		{"bank-b", "bank-b", "bob@bank-b", topology.Default()},
		{"bank-a running all five", "bank-a", "alice@bank-a", fullServiceTopology(t)},
	} {
		tenant := tc.tenant
		t.Run(tc.name, func(t *testing.T) {
			s := newStackIn(t, tc.topo, tenant)
			var routes []string
			err := chi.Walk(s.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
				if !strings.HasPrefix(route, "/internal/") { // diagnostics, not the tenant API
					routes = append(routes, method+" "+route)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			half, err := apiHalves(s.Runtime)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := openAPIDocument(half, tenant)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(doc), "{tenant}") {
				t.Errorf("%s document still holds a {tenant} placeholder", half)
			}
			var spec struct {
				OpenAPI string                               `yaml:"openapi"`
				Servers []struct{ URL string }               `yaml:"servers"`
				Paths   map[string]map[string]map[string]any `yaml:"paths"`
			}
			if err := yaml.Unmarshal(doc, &spec); err != nil {
				t.Fatal(err)
			}
			var documented []string
			for path, ops := range spec.Paths {
				for method, op := range ops {
					documented = append(documented, strings.ToUpper(method)+" "+path)
					if _, ok := op["responses"]; !ok {
						t.Errorf("%s %s has no responses", method, path)
					}
				}
			}
			slices.Sort(routes)
			slices.Sort(documented)
			if diff := cmp.Diff(routes, documented); diff != "" {
				t.Errorf("routes vs OpenAPI operations mismatch (-routes +document):\n%s", diff)
			}
			if !strings.HasPrefix(spec.OpenAPI, "3.") || len(spec.Servers) != 1 || spec.Servers[0].URL != "/"+tenant {
				t.Errorf("document header: openapi %q servers %+v, want 3.x and /%s", spec.OpenAPI, spec.Servers, tenant)
			}

			// Served to the edge without a user, and with one of the tenant's users.
			customer := tc.customer
			for _, tok := range []string{"", s.Token(customer)} {
				resp, body := s.do("edge", tok, "GET", "/v1/openapi.yaml", nil, "")
				if resp.Status != 200 || body != string(doc) {
					t.Errorf("GET /v1/openapi.yaml: %d, %d bytes; want 200 and the document", resp.Status, len(body))
				}
			}
		})
	}
}

// fullServiceTopology is the embedded topology with bank-a running all five services.
func fullServiceTopology(t *testing.T) *topology.Topology {
	t.Helper()
	src := string(topology.Embedded())
	edited := strings.Replace(src, "    calls: [bank-a/user, bank-a/account]\n", "    calls: [bank-a/user, bank-a/account, bank-a/payment, bank-a/ledger]\n", 1)
	edited += `
  - name: bank-a/payment
    tenant: bank-a
    service: payment
    listen: 127.0.0.1:8702
    health: 127.0.0.1:9422
    database_role: payment_svc
    calls: [bank-a/ledger]
  - name: bank-a/ledger
    tenant: bank-a
    service: ledger
    listen: 127.0.0.1:8703
    health: 127.0.0.1:9423
    database_role: ledger_svc
`
	topo, err := topology.Parse("full.yaml", []byte(edited))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// TestGatewayServesBothHalves: a gateway whose tenant runs all five services serves the
// retail and the payments API on one router, each route forwarded to the backend that owns
// it, the three /v1/accounts routes included.
func TestGatewayServesBothHalves(t *testing.T) {
	s := newStackIn(t, fullServiceTopology(t), "bank-a")
	customer, staff := s.Token("alice@bank-a"), s.Token("carol@bank-a")
	acct := demo.AccountID("alice@bank-a", "current").String()
	for _, tc := range []struct{ method, path, body, backend string }{
		{"GET", "/v1/users/me", "", "user"},
		{"POST", "/v1/accounts", `{"owner_id":"x","name":"n","currency":"EUR"}`, "user"},
		{"GET", "/v1/accounts/" + acct, "", "account"},
		{"GET", "/v1/accounts", "", "ledger"},
		{"GET", "/v1/accounts/" + acct + "/balance", "", "ledger"},
		{"GET", "/v1/accounts/" + acct + "/entries", "", "ledger"},
		{"POST", "/v1/payments", `{}`, "payment"},
		{"GET", "/v1/payments/" + acct, "", "payment"},
	} {
		hdr := map[string]string{}
		if tc.method == "POST" {
			hdr["Idempotency-Key"] = "k-" + tc.backend
		}
		tok := customer
		if tc.path == "/v1/accounts" && tc.method == "POST" {
			tok = staff // accounts:open is a staff permission
		}
		resp, body := s.do("edge", tok, tc.method, tc.path, hdr, tc.body)
		if want := `{"backend":"` + tc.backend + `"}`; resp.Status != http.StatusTeapot || body != want {
			t.Errorf("%s %s: %d %s, want %d from the %s backend", tc.method, tc.path, resp.Status, body, http.StatusTeapot, tc.backend)
		}
	}
}
