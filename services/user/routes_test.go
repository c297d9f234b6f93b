package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localpg/pgtest"
	"github.com/ztbank/ztbank/devkit/servertest"
	"github.com/ztbank/ztbank/libs/server"
	accountstore "github.com/ztbank/ztbank/services/account/store"
	"github.com/ztbank/ztbank/services/user/store"
)

var (
	userStore    *store.Store
	accountStore *accountstore.Store
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.MainSeeded(m, func(ctx context.Context, e *pgtest.Env) error {
		up, err := e.Pool(ctx, "user_svc", "bank_a")
		if err != nil {
			return err
		}
		ap, err := e.Pool(ctx, "account_svc", "bank_a")
		userStore, accountStore = store.New(up), accountstore.New(ap)
		return err
	}))
}

// accountPeer stands in for the account service's two routes the user service calls, over
// the real account store, and refuses requests without the user service's identity or a
// valid forwarded user token, as the account service does.
func accountPeer(t *testing.T, h *servertest.Harness) *httptest.Server {
	r := chi.NewRouter()
	r.Use(h.PeerGuard)
	r.Get("/v1/users/{userID}/accounts", func(w http.ResponseWriter, r *http.Request) {
		accts, err := accountStore.ListByOwner(r.Context(), uuid.MustParse(chi.URLParam(r, "userID")), 20)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		server.WriteJSON(w, 200, map[string]any{"accounts": accts})
	})
	r.Post("/v1/accounts", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OwnerID  uuid.UUID `json:"owner_id"`
			Name     string    `json:"name"`
			Currency string    `json:"currency"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		a, err := accountStore.Open(r.Context(), req.OwnerID, accountstore.OpenRequest{Name: req.Name, Currency: req.Currency})
		if err != nil {
			http.Error(w, err.Error(), 422)
			return
		}
		server.WriteJSON(w, 201, a)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

// newStack serves the user service's real router; its account peer is a test server over
// the real account store, reached with the service's real mesh peer client.
func newStack(t *testing.T) *servertest.Harness {
	t.Helper()
	h := servertest.New(t, "bank-a/user")
	peerSrv := accountPeer(t, h)
	h.Serve(NewServer(h.Runtime, nil, userStore, &server.Peer{Name: "bank-a/account", BaseURL: peerSrv.URL, Client: h.PeerClient()}))
	return h
}

func TestRoutes(t *testing.T) {
	pgtest.Require(t)
	s := newStack(t)
	alice, carol := demo.UserID("alice@bank-a").String(), demo.UserID("carol@bank-a").String()
	aliceCurrent := demo.AccountID("alice@bank-a", "current").String()
	open := func(owner, name string) string {
		return fmt.Sprintf(`{"owner_id":%q,"name":%q,"currency":"EUR"}`, owner, name)
	}
	for _, tc := range []struct {
		name       string
		user       string
		method     string
		path       string
		body       string
		wantStatus int
		want       string
		forbidden  string
	}{
		{"me", "alice@bank-a", "GET", "/v1/users/me", "", 200, `"display_name":"Alice Anders"`, ""},
		{"own user", "alice@bank-a", "GET", "/v1/users/" + alice, "", 200, `"username":"alice@bank-a"`, ""},
		{"another user", "alice@bank-a", "GET", "/v1/users/" + carol, "", 403, "decision_id", "Carol"},
		{"unknown user, customer", "alice@bank-a", "GET", "/v1/users/" + uuid.NewString(), "", 403, "", ""},
		{"staff reads a customer", "carol@bank-a", "GET", "/v1/users/" + alice, "", 200, `"role":"customer"`, ""},
		{"staff, unknown user", "carol@bank-a", "GET", "/v1/users/" + uuid.NewString(), "", 404, "", ""},
		{"other tenant's token", "bob@bank-b", "GET", "/v1/users/me", "", 401, "", ""},
		{"own accounts through the account service", "alice@bank-a", "GET", "/v1/users/" + alice + "/accounts", "", 200, aliceCurrent, ""},
		{"another user's accounts", "alice@bank-a", "GET", "/v1/users/" + carol + "/accounts", "", 403, "decision_id", ""},
		{"staff lists a customer's accounts", "carol@bank-a", "GET", "/v1/users/" + alice + "/accounts", "", 200, aliceCurrent, ""},
		{"staff opens for a customer", "carol@bank-a", "POST", "/v1/accounts", open(alice, fmt.Sprintf("holiday-%d", os.Getpid())), 201, alice, ""},
		{"not for staff", "carol@bank-a", "POST", "/v1/accounts", open(carol, "mine"), 422, "customers only", ""},
		{"not for unknown users", "carol@bank-a", "POST", "/v1/accounts", open(uuid.NewString(), "ghost"), 422, "", ""},
		{"customers cannot open", "alice@bank-a", "POST", "/v1/accounts", open(alice, "more"), 403, "decision_id", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.Do("bank-a/gateway", tc.user, tc.method, tc.path, tc.body)
			servertest.Check(t, tc.method+" "+tc.path, status, body, tc.wantStatus, []string{tc.want}, []string{tc.forbidden})
		})
	}
}
