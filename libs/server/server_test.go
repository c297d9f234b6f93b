package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/envvar"
	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/libs/transport"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		want    Env
		wantErr string
	}{
		{"direct defaults", map[string]string{"ZTBANK_WORKLOAD": "bank-a/user", "SPIFFE_ENDPOINT_SOCKET": "unix:///s"},
			Env{Workload: "bank-a/user", Mode: transport.Direct, Socket: "unix:///s", PeerURL: "https://{listen}", StartTimeout: 30 * time.Second}, ""},
		{"mesh needs no socket", map[string]string{"ZTBANK_WORKLOAD": "bank-a/user", "ZTBANK_TRANSPORT_MODE": "mesh", "ZTBANK_PEER_URL_TEMPLATE": "http://{service}.{namespace}:8443"},
			Env{Workload: "bank-a/user", Mode: transport.Mesh, PeerURL: "http://{service}.{namespace}:8443", StartTimeout: 30 * time.Second}, ""},
		{"mesh needs a peer URL", map[string]string{"ZTBANK_WORKLOAD": "bank-a/user", "ZTBANK_TRANSPORT_MODE": "mesh"}, Env{}, "ZTBANK_PEER_URL_TEMPLATE is not set"},
		{"bad log level", map[string]string{"ZTBANK_WORKLOAD": "x", "SPIFFE_ENDPOINT_SOCKET": "unix:///s", "ZTBANK_LOG_LEVEL": "loud"}, Env{}, "ZTBANK_LOG_LEVEL"},
		{"no workload", map[string]string{}, Env{}, "ZTBANK_WORKLOAD is not set"},
		{"direct without socket", map[string]string{"ZTBANK_WORKLOAD": "bank-a/user"}, Env{}, "SPIFFE_ENDPOINT_SOCKET is not set"},
		{"bad mode", map[string]string{"ZTBANK_WORKLOAD": "x", "ZTBANK_TRANSPORT_MODE": "sidecar"}, Env{}, "ZTBANK_TRANSPORT_MODE"},
		{"bad timeout", map[string]string{"ZTBANK_WORKLOAD": "x", "SPIFFE_ENDPOINT_SOCKET": "unix:///s", "ZTBANK_SVID_TIMEOUT": "soon"}, Env{}, "ZTBANK_SVID_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadEnv(env(tc.vars))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("LoadEnv() error = %v, want one line containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("LoadEnv() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPeerURL(t *testing.T) {
	topo := topology.Default()
	user, _ := topo.Workload("bank-a/user")
	direct := map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway", "SPIFFE_ENDPOINT_SOCKET": "unix:///s"}
	mesh := map[string]string{"ZTBANK_WORKLOAD": "bank-a/gateway", "ZTBANK_TRANSPORT_MODE": "mesh",
		"ZTBANK_PEER_URL_TEMPLATE": "http://{service}.{namespace}.svc.cluster.local:8443"}
	with := func(base map[string]string, k, v string) map[string]string {
		m := map[string]string{k: v}
		for bk, bv := range base {
			m[bk] = bv
		}
		return m
	}
	for _, tc := range []struct {
		name string
		vars map[string]string
		want string
	}{
		{"topology address", direct, "https://" + user.Listen},
		{"free-port override", with(direct, "ZTBANK_PEER_ADDR_BANK_A_USER", "127.0.0.1:1234"), "https://127.0.0.1:1234"},
		{"mesh service DNS", mesh, "http://user.bank-a.svc.cluster.local:8443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig("gateway", envvar.NewReader(env(tc.vars), TenantVars))
			if err != nil {
				t.Fatal(err)
			}
			rt := &Runtime{Env: cfg.Env, Topology: topo, Config: cfg}
			if diff := cmp.Diff(tc.want, rt.PeerURL(user)); diff != "" {
				t.Errorf("PeerURL() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPeerRefusesEdgesOutsideTheTopology(t *testing.T) {
	topo := topology.Default()
	self, _ := topo.Workload("bank-a/user")
	rt := &Runtime{Env: Env{Mode: transport.Mesh, PeerURL: "http://{service}"}, Topology: topo, Self: self}
	if _, err := rt.Peer("bank-a/account"); err != nil {
		t.Errorf("Peer(bank-a/account) = %v, want a client", err)
	}
	for _, name := range []string{"bank-b/ledger", "bank-a/gateway", "edge"} {
		if _, err := rt.Peer(name); err == nil {
			t.Errorf("Peer(%s) succeeded; the topology does not let bank-a/user call it", name)
		}
	}
}

func TestHealthcheck(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	vars := map[string]string{"ZTBANK_HEALTH_LISTEN": strings.TrimPrefix(srv.URL, "http://")}
	if err := Healthcheck(t.Context(), env(vars), "bank-a/user"); err != nil {
		t.Errorf("ready service: %v", err)
	}
	ready = false
	if err := Healthcheck(t.Context(), env(vars), "bank-a/user"); err == nil {
		t.Error("not-ready service passed the healthcheck")
	}
	if err := Healthcheck(t.Context(), env(map[string]string{"ZTBANK_WORKLOAD": "bank-z/none"}), "x"); err == nil {
		t.Error("unknown workload passed the healthcheck")
	}
}

func TestRunStopsBeforeBuildWhenSetupFails(t *testing.T) {
	built := false
	err := Run(t.Context(), "user", []string{"user"}, env(nil), io.Discard,
		func(context.Context, *Runtime) (http.Handler, []ReadyCheck, error) {
			built = true
			return nil, nil, nil
		})
	if err == nil || !strings.Contains(err.Error(), "ZTBANK_WORKLOAD") || built {
		t.Errorf("Run() = %v, built = %v; want the setup error and no build", err, built)
	}
}

func TestAtCloseRunsInReverse(t *testing.T) {
	rt := &Runtime{}
	var order []string
	rt.AtClose(func() { order = append(order, "first") })
	rt.AtClose(func() { order = append(order, "second") })
	rt.Close()
	rt.Close() // a second Close must not run them again
	if diff := cmp.Diff([]string{"second", "first"}, order); diff != "" {
		t.Errorf("close order mismatch (-want +got):\n%s", diff)
	}
}
