package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/libs/authz"
	"github.com/ztbank/ztbank/libs/demo"
	"github.com/ztbank/ztbank/libs/demo/seed"
	"github.com/ztbank/ztbank/libs/localpg/pgtest"
	"github.com/ztbank/ztbank/libs/server"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/account/store"
)

var accountStore *store.Store

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func(e *pgtest.Env) error {
		ctx := context.Background()
		if err := seed.Run(ctx, e.Cluster.AdminDSN("postgres"), e.Topology); err != nil {
			return err
		}
		pool, err := e.Pool(ctx, "account_svc", "bank_a")
		if err != nil {
			return err
		}
		accountStore = store.New(pool)
		return nil
	}))
}

// stack is the account service's real router with the real policy engine and token
// verifier, in mesh mode so a test names the calling workload in the XFCC header.
type stack struct {
	t      *testing.T
	srv    *httptest.Server
	issuer *usertoken.Issuer
	topo   *topology.Topology
}

func newStack(t *testing.T) *stack {
	t.Helper()
	topo := topology.Default()
	self, _ := topo.Workload("bank-a/account")
	edge, _ := topo.Workload("edge")
	issuer, err := usertoken.NewIssuer(edge.ID)
	if err != nil {
		t.Fatal(err)
	}
	az, err := authz.New(t.Context(), authz.Service{Workload: self.Name, Tenant: self.Tenant, ID: self.ID}, topo,
		authz.WithRegisterer(prometheus.NewRegistry()), authz.WithAuditWriter(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	rt := &server.Runtime{Env: server.Env{Mode: transport.Mesh}, Topology: topo, Self: self,
		Log: slog.New(slog.DiscardHandler), Authz: az, Tokens: usertoken.NewVerifier(issuer, self.Tenant, edge.ID)}
	h := NewServer(rt, nil, accountStore)
	if err := authz.Guarded(h.(chi.Routes)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &stack{t: t, srv: srv, issuer: issuer, topo: topo}
}

func (s *stack) do(workload, user, method, path, body string) (int, string) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(s.t.Context(), method, s.srv.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	w, _ := s.topo.Workload(workload)
	req.Header.Set("X-Forwarded-Client-Cert", "URI="+w.ID.String())
	if user != "" {
		u, _ := demo.UserByName(user)
		id, _ := usertoken.UserID(u.Tenant, u.ID.String())
		tok, err := s.issuer.Mint(s.t.Context(), usertoken.Claims{User: id, Tenant: u.Tenant, Roles: []string{u.Role}})
		if err != nil {
			s.t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func TestRoutes(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	alice, carol := demo.UserID("alice@bank-a").String(), demo.UserID("carol@bank-a").String()
	aliceCurrent := demo.AccountID("alice@bank-a", "current").String()
	newName := fmt.Sprintf("travel-%d", os.Getpid())
	open := func(owner, name, currency string) string {
		return fmt.Sprintf(`{"owner_id":%q,"name":%q,"currency":%q}`, owner, name, currency)
	}
	for _, tc := range []struct {
		name       string
		workload   string
		user       string
		method     string
		path       string
		body       string
		wantStatus int
		want       string
		forbidden  string
	}{
		{"own account", "bank-a/gateway", "alice@bank-a", "GET", "/v1/accounts/" + aliceCurrent, "", 200, `"amount":250000`, ""},
		{"staff reads within tenant", "bank-a/gateway", "carol@bank-a", "GET", "/v1/accounts/" + aliceCurrent, "", 200, `"amount":250000`, ""},
		{"unknown account, customer", "bank-a/gateway", "alice@bank-a", "GET", "/v1/accounts/" + uuid.NewString(), "", 403, "decision_id", ""},
		{"unknown account, staff", "bank-a/gateway", "carol@bank-a", "GET", "/v1/accounts/" + uuid.NewString(), "", 404, "", ""},
		{"other tenant's token", "bank-a/gateway", "bob@bank-b", "GET", "/v1/accounts/" + aliceCurrent, "", 401, "", "250000"},
		{"own accounts via user service", "bank-a/user", "alice@bank-a", "GET", "/v1/users/" + alice + "/accounts", "", 200, aliceCurrent, ""},
		{"listing is for the user service only", "bank-a/gateway", "alice@bank-a", "GET", "/v1/users/" + alice + "/accounts", "", 403, "", aliceCurrent},
		{"another user's accounts", "bank-a/user", "alice@bank-a", "GET", "/v1/users/" + carol + "/accounts", "", 403, "decision_id", ""},
		{"staff opens an account", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", open(alice, newName, "EUR"), 201, `"amount":0`, ""},
		{"same name again", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", open(alice, newName, "EUR"), 409, "", ""},
		{"customer cannot open", "bank-a/user", "alice@bank-a", "POST", "/v1/accounts", open(alice, "mine", "EUR"), 403, "decision_id", ""},
		{"bad currency", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", open(alice, "x", "XXX"), 422, "", ""},
		{"unknown field", "bank-a/user", "carol@bank-a", "POST", "/v1/accounts", `{"owner_id":"` + alice + `","name":"y","currency":"EUR","balance":100}`, 400, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.do(tc.workload, tc.user, tc.method, tc.path, tc.body)
			if diff := cmp.Diff(tc.wantStatus, status); diff != "" {
				t.Fatalf("%s %s status mismatch (-want +got):\n%s\nbody: %s", tc.method, tc.path, diff, body)
			}
			if !strings.Contains(body, tc.want) {
				t.Errorf("body lacks %q: %s", tc.want, body)
			}
			if tc.forbidden != "" && strings.Contains(body, tc.forbidden) {
				t.Errorf("body leaks %q: %s", tc.forbidden, body)
			}
		})
	}
	// The opened account is alice's, with a zero balance, and listed for her.
	status, body := s.do("bank-a/user", "alice@bank-a", "GET", "/v1/users/"+alice+"/accounts", "")
	var got struct{ Accounts []store.Account }
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil {
		t.Fatalf("list: %d %v %s", status, err, body)
	}
	var names []string
	for _, a := range got.Accounts {
		names = append(names, a.Name)
	}
	if diff := cmp.Diff([]string{"current", "savings", newName}, names); diff != "" {
		t.Errorf("alice's accounts mismatch (-want +got):\n%s", diff)
	}
}
