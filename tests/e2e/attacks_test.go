package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/demo"
)

// internalToken obtains the internal JWT the edge mints for username on tenant through its
// ext_authz endpoint, which returns it as the Authorization header: exactly what a
// compromised workload of that tenant could capture from its inbound requests.
func internalToken(t *testing.T, d *deployment, username, tenant string) string {
	t.Helper()
	tok, err := d.internalToken(context.Background(), username, tenant)
	if errors.Is(err, errCannotMint) {
		t.Skip("obtaining an internal JWT needs the ingress's SVID, which only a local stack can mint")
	}
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// internalTokenReuse is how long the suite reuses an internal JWT: well inside the edge's
// 5-minute maximum lifetime (DESIGN.md §5), so a long run never sends an expired one.
const internalTokenReuse = 2 * time.Minute

// internalToken is the deployment-level internalToken, cached per user for
// internalTokenReuse. Only the ingress may use ext_authz, so it asks with the ingress's SVID.
func (d *deployment) internalToken(ctx context.Context, username, tenant string) (string, error) {
	d.mu.Lock()
	if it, ok := d.internal[username]; ok && time.Since(it.at) < internalTokenReuse {
		d.mu.Unlock()
		return it.token, nil
	}
	d.mu.Unlock()
	tok, err := d.userToken(ctx, username)
	if err != nil {
		return "", err
	}
	ingress, err := d.asIngress(ctx)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.edgeURL+"/authz/"+tenant+"/v1/accounts", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := ingress.Do(req)
	if err != nil {
		return "", fmt.Errorf("ext_authz for %s: %w", username, err)
	}
	resp.Body.Close()
	internal := strings.TrimPrefix(resp.Header.Get("Authorization"), "Bearer ")
	if resp.StatusCode != http.StatusOK || internal == "" {
		return "", fmt.Errorf("ext_authz for %s on %s: status %d, no internal token", username, tenant, resp.StatusCode)
	}
	d.mu.Lock()
	if d.internal == nil {
		d.internal = map[string]issuedToken{}
	}
	d.internal[username] = issuedToken{token: internal, at: time.Now()}
	d.mu.Unlock()
	return internal, nil
}

type issuedToken struct {
	token string
	at    time.Time
}

// directGet calls service's path with a minted SVID for caller and optional headers.
func directGet(t *testing.T, d *deployment, caller, service, path string, headers map[string]string) Observed {
	t.Helper()
	ctx := context.Background()
	from, _ := topo.Workload(caller)
	to, _ := topo.Workload(service)
	client, err := d.direct(ctx, from.ID, to.ID)
	if errors.Is(err, errCannotMint) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+d.services[service]+path, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(client, req)
}

// TestReplayedInternalJWT replays a genuine bank-b internal token, captured from a bank-b
// request, at bank-a: directly at a bank-a service from a workload bank-a trusts, and at
// the edge. The control row shows the token itself is valid where it belongs.
func TestReplayedInternalJWT(t *testing.T) {
	d := needLive(t)
	if d.mint == nil {
		t.Skip(errCannotMint)
	}
	bobs := internalToken(t, d, "bob@bank-b", "bank-b")
	alice := demo.UserID("alice@bank-a").String()
	bobAccount := demo.AccountID("bob@bank-b", "current").String()
	auth := map[string]string{"Authorization": "Bearer " + bobs}
	for _, tc := range []struct {
		name             string
		caller, service  string
		path             string
		want             Expectation
		mustNotMentionID string
	}{
		{"bank-b token at bank-a user service", "bank-a/gateway", "bank-a/user", "/v1/users/me", Expectation{401, LayerJWT}, ""},
		{"bank-b token for alice's profile", "bank-a/gateway", "bank-a/user", "/v1/users/" + alice, Expectation{401, LayerJWT}, alice},
		{"bank-b token at bank-a account service", "bank-a/user", "bank-a/account", "/v1/users/" + alice + "/accounts", Expectation{401, LayerJWT}, alice},
		{"control: the token where it belongs", "bank-b/gateway", "bank-b/ledger", "/v1/accounts/" + bobAccount + "/balance", Expectation{200, LayerNone}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := directGet(t, d, tc.caller, tc.service, tc.path, auth)
			if diff := cmp.Diff(tc.want, got.Expectation()); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s\nbody: %.300s err: %v", diff, got.Body, got.Err)
			}
		})
	}
	t.Run("bank-b internal token at the edge", func(t *testing.T) {
		for _, path := range []string{"/bank-a/v1/users/me", "/bank-b/v1/accounts"} {
			req, _ := http.NewRequest(http.MethodGet, d.edgeURL+path, nil)
			req.Header.Set("Authorization", "Bearer "+bobs)
			got := classify(d.edge.Do(req))
			if diff := cmp.Diff(Expectation{401, LayerEdge}, got.Expectation()); diff != "" {
				t.Errorf("%s: mismatch (-want +got):\n%s\nbody: %.300s", path, diff, got.Body)
			}
		}
	})
}

// TestForgedSpiffeIDHeader sends identity headers a client has no business setting: the edge
// refuses them, and a service reached directly ignores them and reports the peer its mTLS
// handshake proved.
func TestForgedSpiffeIDHeader(t *testing.T) {
	d := needLive(t)
	payment, _ := topo.Workload("bank-b/payment")
	forged := map[string]string{
		"X-Spiffe-Id":             payment.ID.String(),
		"X-Forwarded-Client-Cert": "By=spiffe://ztbank.local/ns/bank-a/sa/user;URI=" + payment.ID.String(),
	}
	tok, err := d.userToken(context.Background(), "alice@bank-a")
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range forged {
		t.Run("edge refuses "+name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, d.edgeURL+"/bank-a/v1/users/me", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set(name, value)
			got := classify(d.edge.Do(req))
			if diff := cmp.Diff(Expectation{403, LayerEdge}, got.Expectation()); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s\nbody: %.300s", diff, got.Body)
			}
		})
	}
	t.Run("service ignores forged headers", func(t *testing.T) {
		if d.mint == nil {
			t.Skip(errCannotMint)
		}
		got := directGet(t, d, "bank-a/gateway", "bank-a/user", "/internal/whoami", forged)
		if got.Status != http.StatusOK {
			t.Fatalf("whoami: status %d, body %.300s, err %v", got.Status, got.Body, got.Err)
		}
		var hop struct {
			Caller string `json:"caller"`
		}
		if err := json.Unmarshal([]byte(got.Body), &hop); err != nil {
			t.Fatal(err)
		}
		gw, _ := topo.Workload("bank-a/gateway")
		if hop.Caller != gw.ID.String() {
			t.Errorf("service saw caller %q, want the handshake's %q (forged header %q must be ignored)", hop.Caller, gw.ID, payment.ID)
		}
	})
}

// asIngress returns the edge client presenting a genuine SVID of Emissary-ingress, the only
// workload the topology lets use the edge's ext_authz endpoint.
func (d *deployment) asIngress(ctx context.Context) (*http.Client, error) {
	return d.edgeAs(ctx, "emissary-ingress")
}

// edgeAs returns a client of the edge's public listener that presents a genuine SVID of
// workload, minted once per run.
func (d *deployment) edgeAs(ctx context.Context, workload string) (*http.Client, error) {
	if d.mint == nil {
		return nil, errCannotMint
	}
	d.edgeMu.Lock()
	defer d.edgeMu.Unlock()
	if c, ok := d.edgeClients[workload]; ok {
		return c, nil
	}
	w, _ := topo.Workload(workload)
	dir := filepath.Join(d.tmp, "svid", strings.ReplaceAll(workload, "/", "_")+"-edge-client")
	if err := d.mint(ctx, w.ID, dir); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	tr := d.edge.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	c := &http.Client{Timeout: d.edge.Timeout, Transport: tr}
	if d.edgeClients == nil {
		d.edgeClients = map[string]*http.Client{}
	}
	d.edgeClients[workload] = c
	return c, nil
}
