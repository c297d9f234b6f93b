package web

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/devca"
	"github.com/ztbank/ztbank/libs/topology"
)

const auditLine = `{"time":"2026-11-30T12:00:00.123Z","level":"INFO","msg":"authz decision","decision_id":"0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0","service":"bank-a/account","service_id":"spiffe://ztbank.local/ns/bank-a/sa/account","tenant":"bank-a","caller_workload":"spiffe://ztbank.local/ns/bank-a/sa/gateway","user":"spiffe://bank-a/user/alice","user_tenant":"bank-a","roles":["customer"],"action":"accounts:read","method":"GET","route":"/v1/accounts/{accountID}","params":{"accountID":"a1"},"result":"deny","reason":"not_owner","policy_revision":"abc","trace_id":"0123456789abcdef0123456789abcdef","span_id":"0123456789abcdef","status":403}`

type fixture struct {
	srv     *httptest.Server
	token   string
	logFile string
	cancel  context.CancelFunc
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	token, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{token: token, logFile: filepath.Join(dir, "bank-a-account.log")}
	matrix := filepath.Join(dir, "isolation-matrix.html")
	if err := os.WriteFile(matrix, []byte("<!doctype html><p>matrix</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Topology: topology.Default(), LogFiles: []string{f.logFile}, MatrixHTML: matrix, Token: token,
		Poll: 20 * time.Millisecond, JaegerURL: "http://127.0.0.1:16686"}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	f.srv = httptest.NewServer(c.Handler())
	f.cancel = cancel
	t.Cleanup(func() { f.srv.Close(); cancel(); <-done })
	return f
}

func (f *fixture) get(t *testing.T, path string, cookie string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestTokenGuard: without the token every page is a 401 problem+json; the token in the URL
// once becomes an HttpOnly, Secure, SameSite=Strict cookie and a redirect to the URL without
// it; a wrong token in either place is refused.
func TestTokenGuard(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name, path, cookie string
		wantStatus         int
		wantType           string
	}{
		{"no token", "/", "", 401, "application/problem+json"},
		{"no token, API", "/api/events", "", 401, "application/problem+json"},
		{"no token, matrix", "/matrix", "", 401, "application/problem+json"},
		{"wrong token in URL", "/?token=" + strings.Repeat("A", 43), "", 401, "application/problem+json"},
		{"wrong cookie", "/", strings.Repeat("A", 43), 401, "application/problem+json"},
		{"token in URL", "/?token=" + url.QueryEscape(f.token), "", 303, "text/html; charset=utf-8"},
		{"cookie", "/", f.token, 200, "text/html; charset=utf-8"},
		{"cookie, unknown page", "/nope", f.token, 404, "application/problem+json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.get(t, tc.path, tc.cookie)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("Content-Type") != tc.wantType {
				t.Fatalf("GET %s = %d %q, want %d %q\n%s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.wantStatus, tc.wantType, body)
			}
			if strings.Contains(string(body), f.token) {
				t.Errorf("the response body carries the token")
			}
			if resp.StatusCode == 303 {
				if loc := resp.Header.Get("Location"); loc != "/" {
					t.Errorf("redirect to %q, want / (without the token)", loc)
				}
				var ck *http.Cookie
				for _, c := range resp.Cookies() {
					if c.Name == CookieName {
						ck = c
					}
				}
				if ck == nil || ck.Value != f.token || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode {
					t.Errorf("cookie = %+v, want the token, HttpOnly, Secure, SameSite=Strict", ck)
				}
			}
		})
	}
}

// TestStreamDeliversDecisions appends an audit line to a service log and reads it from the
// event stream, enriched with the caller's workload name, the user and the Jaeger link, and
// without the fields the console does not show (route parameters).
func TestStreamDeliversDecisions(t *testing.T) {
	f := newFixture(t, nil)
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/events", nil)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: f.token})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	start := time.Now()
	if err := os.WriteFile(f.logFile, []byte(`{"msg":"starting"}`+"\n"+auditLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	var data string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = d
			break
		}
	}
	if data == "" {
		t.Fatalf("no event: %v", sc.Err())
	}
	// Twice the poll interval plus scheduling is the budget; two seconds is the page's.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("event took %s", took)
	}
	var got Event
	if err := json.Unmarshal([]byte(data), &got); err != nil {
		t.Fatal(err)
	}
	want := Event{Seq: 1, Time: "2026-11-30T12:00:00.123Z", DecisionID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", Service: "bank-a/account",
		Tenant: "bank-a", Caller: "bank-a/gateway", CallerID: "spiffe://ztbank.local/ns/bank-a/sa/gateway", User: "alice@bank-a",
		UserID: "spiffe://bank-a/user/alice", Action: "accounts:read", Method: "GET", Route: "/v1/accounts/{accountID}", Reason: "not_owner",
		Status: 403, TraceID: "0123456789abcdef0123456789abcdef", TraceURL: "http://127.0.0.1:16686/trace/0123456789abcdef0123456789abcdef"}
	got.Seen = ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}
	if strings.Contains(data, "a1") || strings.Contains(data, "customer") {
		t.Errorf("the event carries fields the console does not show: %s", data)
	}
}

// TestRoutesFromServices serves a metrics page like a service's health port and checks the
// console shows its published routes and permissions, and says why for a workload it cannot
// reach.
func TestRoutesFromServices(t *testing.T) {
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE ztbank_route_permission gauge\n"+
			`ztbank_route_permission{from="bank-b/payment",method="POST",permission="ledger:post",route="/v1/postings"} 1`+"\n"+
			`ztbank_route_permission{from="",method="GET",permission="ledger:read",route="/v1/accounts"} 1`+"\n")
	}))
	defer metrics.Close()
	f := newFixture(t, func(c *Config) {
		c.Health = map[string]string{"bank-b/ledger": strings.TrimPrefix(metrics.URL, "http://"), "bank-a/user": "127.0.0.1:1"}
	})
	resp := f.get(t, "/api/routes", f.token)
	defer resp.Body.Close()
	var got map[string]WorkloadRoutes
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := []RouteInfo{{Method: "GET", Route: "/v1/accounts", Permission: "ledger:read"},
		{Method: "POST", Route: "/v1/postings", Permission: "ledger:post", From: []string{"bank-b/payment"}}}
	if diff := cmp.Diff(want, got["bank-b/ledger"].Routes); diff != "" {
		t.Errorf("bank-b/ledger routes mismatch (-want +got):\n%s", diff)
	}
	if got["bank-a/user"].Error == "" || got["emissary-ingress"].Error == "" {
		t.Errorf("unreachable and external workloads carry no reason: %+v %+v", got["bank-a/user"], got["emissary-ingress"])
	}
}

// TestScrapeFallsBackToRouteInfo: a service that publishes only its route table (the edge's
// ServeMux cannot be walked for Require) has its routes shown without a permission; the
// permission table wins when both are published; a service with neither shows none.
func TestScrapeFallsBackToRouteInfo(t *testing.T) {
	const (
		perm = "# TYPE ztbank_route_permission gauge\n" +
			`ztbank_route_permission{from="",method="GET",permission="ledger:read",route="/v1/accounts"} 1` + "\n"
		info = "# TYPE ztbank_route_info gauge\n" +
			`ztbank_route_info{method="GET",route="/v1/exchange"} 1` + "\n" +
			`ztbank_route_info{method="*",route="/bank-a/"} 1` + "\n"
	)
	for _, tc := range []struct {
		name, body string
		want       []RouteInfo
	}{
		{"permissions", perm + info, []RouteInfo{{Method: "GET", Route: "/v1/accounts", Permission: "ledger:read"}}},
		{"route table only", info, []RouteInfo{{Method: "*", Route: "/bank-a/"}, {Method: "GET", Route: "/v1/exchange"}}},
		{"neither", "# TYPE other gauge\nother 1\n", []RouteInfo{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, tc.body) }))
			defer srv.Close()
			got, err := newRouteCache(nil, nil).scrape(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("scrape mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStartServesTLSOnLoopbackOnly starts the console as `make console` does, with a leaf
// from a dev CA, and checks a client that trusts only that CA gets the page, and that a
// non-loopback address is refused.
func TestStartServesTLSOnLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	ca, err := devca.New()
	if err != nil {
		t.Fatal(err)
	}
	files := DefaultCertFiles(dir)
	os.MkdirAll(filepath.Dir(files.Cert), 0o700)
	if err := ca.IssueFiles(files.Cert, files.Key, devca.LoopbackDNSNames, devca.LoopbackIPs); err != nil {
		t.Fatal(err)
	}
	token, _ := NewToken()
	cfg := Config{Topology: topology.Default(), Token: token, MatrixHTML: filepath.Join(dir, "none.html")}
	if _, err := Start(context.Background(), cfg, "0.0.0.0:0", files); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("Start(0.0.0.0) = %v, want a loopback-only refusal", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Start(ctx, cfg, "127.0.0.1:0", files)
	if err != nil {
		t.Fatal(err)
	}
	jar := &cookieJar{}
	client := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}, Timeout: 10 * time.Second}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "ztbank console") || resp.Request.URL.RawQuery != "" {
		t.Errorf("GET %s = %d (final URL %s)", srv.URL, resp.StatusCode, resp.Request.URL)
	}
	if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("not TLS 1.3: %+v", resp.TLS)
	}
	cancel()
	if err := srv.Wait(); err != nil {
		t.Errorf("Wait() = %v", err)
	}
}

// cookieJar is the least a client needs to carry the console's one cookie.
type cookieJar struct{ cookies []*http.Cookie }

func (j *cookieJar) SetCookies(_ *url.URL, cs []*http.Cookie) { j.cookies = append(j.cookies, cs...) }
func (j *cookieJar) Cookies(*url.URL) []*http.Cookie          { return j.cookies }
