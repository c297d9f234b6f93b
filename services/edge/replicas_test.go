package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/ztbank/ztbank/libs/usertoken"
	"github.com/ztbank/ztbank/services/edge/config"
	"github.com/ztbank/ztbank/services/edge/internal/oidctest"
	"github.com/ztbank/ztbank/services/edge/keys"
)

// roundRobin is a load balancer in front of replicas: each request goes to the next backend;
// a backend that refuses the connection (stopped, not yet listening) is skipped, as a
// Service drops an endpoint that is not ready.
type roundRobin struct {
	backends []string // host:port
	next     atomic.Uint64
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := rr.next.Add(1)
	for i := range rr.backends {
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host, out.RequestURI = "http", rr.backends[(int(start)+i)%len(rr.backends)], ""
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			continue
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	http.Error(w, "no backend answers", http.StatusBadGateway)
}

// replica is one edge process: run() on its own sockets, restartable.
type replica struct {
	env                      map[string]string
	public, internal, health string
	cancel                   context.CancelFunc
	done                     chan error
}

func (rp *replica) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rp.cancel, rp.done = cancel, make(chan error, 1)
	env := map[string]string{"ZTBANK_LISTEN": rp.internal, "ZTBANK_HEALTH_LISTEN": rp.health, "EDGE_PUBLIC_LISTEN": rp.public}
	for k, v := range rp.env {
		env[k] = v
	}
	go func() { rp.done <- run(ctx, nil, envOf(env), io.Discard, io.Discard) }()
	waitFor(t, "http://"+rp.health+"/healthz")
}

func (rp *replica) stop(t *testing.T) {
	t.Helper()
	rp.cancel()
	if err := <-rp.done; err != nil {
		t.Errorf("edge replica run() = %v", err)
	}
}

// rig is two edge replicas behind round-robin, with a gateway that verifies every internal
// token through a real usertoken verifier fetching the JWKS through round-robin too (default
// refetch limits, as the services use).
type rig struct {
	a, b     *replica
	store    string // key store directory; "" for in-memory keys
	ext      string // an external token of alice@bank-a
	publicRR *httptest.Server

	mu       sync.Mutex
	signedBy map[string]int // kid -> tokens verified
	failures []string
}

// The shortest schedule the loader accepts for a 500ms refresh: publish-ahead 3 refreshes
// + the verifiers' 5s refetch limit, rounded up.
const (
	rigRefresh = 500 * time.Millisecond
	rigAhead   = 7 * time.Second
	rigRotate  = 9 * time.Second
)

func newRig(t *testing.T, shared bool) *rig {
	t.Helper()
	p := oidctest.Start(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "provider-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	table := filepath.Join(dir, "enrolment.json")
	if err := os.WriteFile(table, []byte(`[{"key":"alice@bank-a","tenant":"bank-a","user_id":"alice","roles":["customer"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	rg := &rig{signedBy: map[string]int{}}
	jwksRR := &roundRobin{}
	jwksSrv := httptest.NewServer(jwksRR)
	t.Cleanup(jwksSrv.Close)
	verifier := usertoken.NewVerifier(usertoken.NewRemoteKeys(http.DefaultClient, jwksSrv.URL+"/.well-known/jwks.json"), "bank-a", mustEdgeID(t))
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, err := verifier.Verify(r.Context(), raw); err != nil {
			rg.fail("gateway: " + err.Error())
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if tok, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256}); err == nil {
			rg.mu.Lock()
			rg.signedBy[tok.Signatures[0].Header.KeyID]++
			rg.mu.Unlock()
		}
		_, _ = io.WriteString(w, "gateway")
	}))
	t.Cleanup(gw.Close)

	env := map[string]string{
		"EDGE_ENROLMENT":           table,
		"ZTBANK_TRANSPORT_MODE":    "mesh",
		"ZTBANK_PEER_URL_TEMPLATE": gw.URL + "/{tenant}",
		"EDGE_ISSUERS":             "bank-a=" + p.URL + ",bank-b=" + p.URL,
		"EDGE_OIDC_CA_FILE":        caFile,
		"EDGE_KEY_REFRESH":         rigRefresh.String(),
		"EDGE_KEY_PUBLISH_AHEAD":   rigAhead.String(),
		"EDGE_KEY_ROTATION":        rigRotate.String(),
		"EDGE_TOKEN_TTL":           "3s",
		"EDGE_KEY_OVERLAP":         "4s",
		// The rig drives one user as fast as it can to cover rotations densely; the edge's
		// rate limits are someone else's test.
		"EDGE_RATE_PER_USER":   "0",
		"EDGE_RATE_PER_TENANT": "0",
	}
	if shared {
		rg.store = filepath.Join(dir, "keys")
		if err := os.Mkdir(rg.store, 0o700); err != nil {
			t.Fatal(err)
		}
		env["EDGE_KEY_STORE"] = "dir:" + rg.store
	}
	if _, err := config.Load(envOf(mergeEnv(env, map[string]string{"EDGE_PUBLIC_LISTEN": "127.0.0.1:1"}))); err != nil {
		t.Fatalf("the test's schedule is not one the loader accepts: %v", err)
	}
	rg.a = &replica{env: env, public: freeAddr(t), internal: freeAddr(t), health: freeAddr(t)}
	rg.b = &replica{env: env, public: freeAddr(t), internal: freeAddr(t), health: freeAddr(t)}
	rg.a.start(t)
	rg.b.start(t)
	jwksRR.backends = []string{rg.a.internal, rg.b.internal}
	rg.publicRR = httptest.NewServer(&roundRobin{backends: []string{rg.a.public, rg.b.public}})
	t.Cleanup(rg.publicRR.Close)
	now := time.Now()
	rg.ext = p.SignRS256(t, map[string]any{"iss": p.URL, "aud": "ztbank", "sub": "x", "email": "alice@bank-a",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	return rg
}

func (rg *rig) fail(msg string) {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	rg.failures = append(rg.failures, msg)
}

// call sends one client request through the balancer; it reports success.
func (rg *rig) call() bool {
	req, _ := http.NewRequest(http.MethodGet, rg.publicRR.URL+"/bank-a/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer "+rg.ext)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rg.fail(err.Error())
		return false
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		rg.fail(fmt.Sprintf("status %d: %s", resp.StatusCode, body))
		return false
	}
	return true
}

func (rg *rig) signers() int {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	return len(rg.signedBy)
}

// TestTwoReplicasWithoutSharedKeysFail is the bug the shared store fixes, shown on the same
// rig: with keys in each replica's memory, verifiers fetching the JWKS through round-robin
// refuse tokens of the replica they did not fetch from.
func TestTwoReplicasWithoutSharedKeysFail(t *testing.T) {
	rg := newRig(t, false)
	defer rg.a.stop(t)
	defer rg.b.stop(t)
	failed := 0
	for range 40 {
		if !rg.call() {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("40 requests through two in-memory-key replicas all verified; the rig cannot show the failure the key store prevents")
	}
	t.Logf("without a shared key store: %d of 40 requests failed", failed)
}

// TestTwoReplicasRotateAndRestart: the rig on one directory key store. Traffic flows without
// pause across two key rotations and a restart of one replica; not one request may fail. It
// also measures how long each new key takes to appear in both replicas' JWKS.
func TestTwoReplicasRotateAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two key rotations in real time")
	}
	rg := newRig(t, true)
	a, b, store := rg.a, rg.b, rg.store
	defer a.stop(t)
	// An empty store's first key is published ahead too: until it signs, the replicas are
	// alive but not ready, so a balancer sends them no clients.
	if got := status(t, "http://"+a.health+"/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("readyz before the first key signs: %d, want 503", got)
	}

	// Propagation: when each key first appears in each replica's JWKS, against when it was
	// written to the store and when it starts signing.
	var mu sync.Mutex
	firstSeen := map[string]map[string]time.Time{}
	written := map[string]keys.Key{}
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if doc, _, err := keys.Dir(store).Load(context.Background()); err == nil {
				mu.Lock()
				for _, k := range doc.Keys {
					written[k.ID] = k
				}
				mu.Unlock()
			}
			for name, addr := range map[string]string{"a": a.internal, "b": b.internal} {
				set, err := fetchJWKS("http://" + addr + "/.well-known/jwks.json")
				if err != nil {
					continue // b while restarting
				}
				now := time.Now()
				mu.Lock()
				for _, k := range set.Keys {
					if firstSeen[k.KeyID] == nil {
						firstSeen[k.KeyID] = map[string]time.Time{}
					}
					if _, ok := firstSeen[k.KeyID][name]; !ok {
						firstSeen[k.KeyID][name] = now
					}
				}
				mu.Unlock()
			}
		}
	}()

	// Until the first key activates the edge cannot mint (published ahead even on an empty
	// store); wait for the first key to sign before counting.
	deadline := time.Now().Add(rigAhead + 5*time.Second)
	for rg.signers() == 0 && time.Now().Before(deadline) {
		rg.call()
	}
	if rg.signers() == 0 {
		t.Fatal("no token verified within publish-ahead of start")
	}
	rg.mu.Lock()
	rg.failures = nil
	rg.mu.Unlock()
	if got := status(t, "http://"+a.health+"/readyz"); got != http.StatusOK {
		t.Errorf("readyz once a key signs: %d, want 200", got)
	}
	requests, failed := 0, 0
	call := func() {
		requests++
		if !rg.call() {
			failed++
		}
	}
	// Traffic across the first rotation, then a restart of b, then the second rotation.
	deadline = time.Now().Add(3*rigRotate + 10*time.Second)
	restarted := false
	var tail time.Time
	for time.Now().Before(deadline) {
		call()
		if !restarted && rg.signers() >= 2 {
			b.stop(t)
			for range 20 {
				call() // b down: the balancer sends everything to a
			}
			b.start(t)
			restarted = true
		}
		if restarted && rg.signers() >= 3 && tail.IsZero() {
			// Keep the traffic up past the retirement of the previous key (overlap 4s).
			tail = time.Now().Add(5 * time.Second)
		}
		if !tail.IsZero() && time.Now().After(tail) {
			break
		}
	}
	b.stop(t)
	b.start(t) // for the deferred stop; and one more restart under no load
	close(stopWatch)
	<-watchDone

	rg.mu.Lock()
	defer rg.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	signedBy, failures := rg.signedBy, rg.failures
	t.Logf("%d requests, %d failed, tokens by key %v", requests, failed, signedBy)
	if failed != 0 || len(failures) != 0 {
		t.Errorf("%d of %d requests failed across rotation and restart; first: %v", failed, requests, failures[:min(3, len(failures))])
	}
	if !restarted || len(signedBy) < 3 {
		t.Fatalf("saw %d signing keys (restarted %v); want the first key and two rotations", len(signedBy), restarted)
	}
	for kid := range signedBy {
		k, ok := written[kid]
		if !ok {
			t.Errorf("key %s signed but never seen in the store", kid)
			continue
		}
		seenA, okA := firstSeen[kid]["a"]
		seenB, okB := firstSeen[kid]["b"]
		if !okA || !okB {
			t.Errorf("key %s signed but never published by both replicas (a %v, b %v)", kid, okA, okB)
			continue
		}
		last := seenA
		if seenB.After(last) {
			last = seenB
		}
		t.Logf("key %s: in both JWKS %v after it was written; %v before it signed", kid[:8], last.Sub(k.Written).Round(time.Millisecond), k.Activate.Sub(last).Round(time.Millisecond))
		// Watching at 20ms; a key seen only after it started signing breaks publish-ahead.
		if !last.Before(k.Activate.Add(20 * time.Millisecond)) {
			t.Errorf("key %s reached both JWKS at %v, after it started signing at %v", kid, last, k.Activate)
		}
	}
}

func mergeEnv(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func fetchJWKS(url string) (jose.JSONWebKeySet, error) {
	resp, err := http.Get(url)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return jose.JSONWebKeySet{}, errors.New(resp.Status)
	}
	var set jose.JSONWebKeySet
	err = jsonDecode(resp.Body, &set)
	return set, err
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
