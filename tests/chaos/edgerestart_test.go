package chaos

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/usertoken"
	edgeconfig "github.com/ztbank/ztbank/services/edge/config"
)

// The replay of ADR 0995: internal JWTs the edge minted before it was killed, presented
// afterwards to a service directly, over mTLS, by the workload that legitimately forwards
// them (bank-b's gateway calling bank-b's ledger), as a captured token would be replayed.
const (
	replayUser   = "bob@bank-b"
	replayTenant = "bank-b"
	// replayCaller calls replayServer for replayUser's balance on every balance read.
	replayCaller = "bank-b/gateway"
	replayServer = "bank-b/ledger"
	// tokenIssuer is the only workload the topology lets use the edge's ext_authz endpoint,
	// which hands back the internal JWT it minted as the Authorization header.
	tokenIssuer = "emissary-ingress"
)

// Key-store edge (ADR 0985) for the second edge-restart row: refresh fast so the restarted
// replica's view is fresh at once; publish-ahead is the configuration's own minimum (three
// refreshes plus the verifiers' refetch interval) plus one refresh.
const (
	keyRefresh      = time.Second
	keyPublishAhead = 3*keyRefresh + edgeconfig.VerifierRefetch + keyRefresh
)

// mintTTL is how long the test's own SVIDs live: the fault, a full recovery and the replay.
const mintTTL = 2*recoveryTimeout + chaosBudget

// replayPath is replayUser's balance at replayServer, the route the gateway forwards to.
func replayPath() string { return "/v1/accounts/" + bob.String() + "/balance" }

// edgeRestart is the "kill -9 the edge" fault with ADR 0995's replay around it. Before the
// kill it captures two internal JWTs for replayUser: seen, replayed at once (the control: the
// token, the SVID and the route are good, and the ledger has now verified and cached it), and
// unseen, presented nowhere. Once the stack has recovered, the ledger is shown to hold the
// restarted edge's key (a fresh token verifies there), then unseen is replayed.
//   - store false (in-memory keys, the local stack's configuration): the restarted edge has a
//     new key; unseen must be refused with 401 internal-token problem+json, unknown signing key.
//   - store true (EDGE_KEY_STORE=dir:, switched on before the load starts): the restarted
//     edge signs with the same key; unseen must be accepted (it is valid until its exp).
//
// In both, seen is still accepted: the ledger's verified-token cache answers for it until its
// exp without looking at keys (libs/usertoken), which ADR 0995 records.
func edgeRestart(kill func(context.Context, *testing.T, *env) ([]string, error), store bool) fault {
	var c captured
	var logs map[string]logCount
	f := fault{name: "edge restart (kill -9)", check: onlyStatuses("502", "503"), inject: kill,
		before: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
			var err error
			c, err = capture(ctx, e)
			logs = e.countLogs()
			return nil, err
		},
		after: func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
			notes, err := c.replay(ctx, e, store)
			return append(notes, e.logsSince(logs)...), err
		}}
	if store {
		f.name = "edge restart with a key store (kill -9)"
		f.prepare = func(ctx context.Context, t *testing.T, e *env) ([]string, error) {
			return useKeyStore(ctx, t, e, kill)
		}
	}
	return f
}

// captured is what the edge-restart faults keep from before the kill.
type captured struct {
	ingress, ledger *http.Client // the ext_authz caller; the gateway's client of the ledger
	seen, unseen    string
	kid             string
	exp             time.Time
}

func capture(ctx context.Context, e *env) (captured, error) {
	var c captured
	var err error
	if c.ingress, err = e.edgeClientAs(ctx, tokenIssuer); err != nil {
		return c, err
	}
	if c.ledger, err = e.directClient(ctx, replayCaller, replayServer); err != nil {
		return c, err
	}
	// The edge reuses the internal JWT it minted for an external token (services/edge
	// exchange), so the load's token of replayUser has long been presented to the ledger:
	// each captured token comes from a login of its own, which nothing else uses.
	for _, tok := range []*string{&c.seen, &c.unseen} {
		ext, err := devoidcLogin(ctx, e, replayUser)
		if err != nil {
			return c, err
		}
		if *tok, err = e.internalJWT(ctx, c.ingress, ext.AccessToken); err != nil {
			return c, err
		}
	}
	if c.seen == c.unseen {
		return c, errors.New("the edge minted the same internal JWT twice")
	}
	if c.kid, c.exp, err = kidAndExp(c.unseen); err != nil {
		return c, err
	}
	// The control: before the restart the token is good where it belongs.
	if r := e.present(ctx, c.ledger, c.seen); r.status != http.StatusOK {
		return c, fmt.Errorf("control before the restart: %s with a fresh internal JWT answered %s", replayServer, r)
	}
	return c, nil
}

// replay runs once the stack has recovered from the kill.
func (c captured) replay(ctx context.Context, e *env, store bool) ([]string, error) {
	ext, err := e.tokens.get(ctx, replayUser)
	if err != nil {
		return nil, err
	}
	fresh, err := e.internalJWT(ctx, c.ingress, ext)
	if err != nil {
		return nil, fmt.Errorf("internal JWT from the restarted edge: %w", err)
	}
	kid, _, err := kidAndExp(fresh)
	if err != nil {
		return nil, err
	}
	switch {
	case store && kid != c.kid:
		return nil, fmt.Errorf("with a key store the restarted edge signs with key %s, not the stored %s", kid, c.kid)
	case !store && kid == c.kid:
		return nil, fmt.Errorf("with in-memory keys the restarted edge still signs with key %s: the replay proves nothing", kid)
	}
	// The ledger verifies the restarted edge's token: it holds the key set the restarted
	// edge publishes (with in-memory keys it had to refetch it, at most once per
	// VerifierRefetch, so the first tries may be refused).
	if err := waitFor(ctx, recoveryTimeout, 500*time.Millisecond, func() error {
		if r := e.present(ctx, c.ledger, fresh); r.status != http.StatusOK {
			return fmt.Errorf("%s refuses the restarted edge's token: %s", replayServer, r)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if left := time.Until(c.exp); left < requestTimeout {
		return nil, fmt.Errorf("the captured token expires in %s: recovery took longer than its life, so a replay would test expiry, not the restart", left)
	}
	var notes []string
	r := e.present(ctx, c.ledger, c.unseen)
	if store {
		if r.status != http.StatusOK {
			return nil, fmt.Errorf("with a key store, a pre-restart internal JWT replayed at %s answered %s, want 200 until its exp", replayServer, r)
		}
		notes = append(notes, fmt.Sprintf("same key after the restart; a pre-restart internal JWT replayed at %s over mTLS as %s: 200 (valid until its exp, %s later)",
			replayServer, replayCaller, time.Until(c.exp).Round(time.Second)))
	} else {
		want := result{status: http.StatusUnauthorized, ctype: "application/problem+json", typ: problem.TypeInternalToken, detail: usertoken.ErrUnknownKey.Error()}
		if r.status != want.status || r.ctype != want.ctype || r.typ != want.typ || r.detail != want.detail {
			return nil, fmt.Errorf("with in-memory keys, a pre-restart internal JWT %s had not seen, replayed after it refetched the key set, answered %s; want %s",
				replayServer, r, want)
		}
		notes = append(notes, fmt.Sprintf("new key after the restart; a pre-restart internal JWT replayed at %s over mTLS as %s: 401 internal-token (%s)",
			replayServer, replayCaller, r.detail))
	}
	// A token the ledger verified before the restart is answered from its cache.
	if r := e.present(ctx, c.ledger, c.seen); r.status != http.StatusOK {
		return nil, fmt.Errorf("a pre-restart internal JWT %s verified before the restart answered %s, want 200 from its verified-token cache (ADR 0995)", replayServer, r)
	}
	return append(notes, "one it had verified before: 200 (its verified-token cache)"), nil
}

// useKeyStore restarts the edge on a directory key store, before the load starts, and waits
// until the stack is ready again (the edge is not ready until its first key signs, one
// publish-ahead after it wrote it).
func useKeyStore(ctx context.Context, t *testing.T, e *env, kill func(context.Context, *testing.T, *env) ([]string, error)) ([]string, error) {
	dir := filepath.Join(e.dir, "edge-keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	edge := e.st.Services["edge"]
	if edge == nil {
		return nil, errors.New("the stack runs no edge")
	}
	env := slices.DeleteFunc(slices.Clone(edge.Env), func(kv string) bool { return strings.HasPrefix(kv, "EDGE_KEY_") })
	edge.SetEnv(append(env, "EDGE_KEY_STORE=dir:"+dir, "EDGE_KEY_REFRESH="+keyRefresh.String(),
		"EDGE_KEY_PUBLISH_AHEAD="+keyPublishAhead.String()))
	if _, err := kill(ctx, t, e); err != nil {
		return nil, err
	}
	if err := e.st.WaitReady(ctx, recoveryTimeout); err != nil {
		return nil, fmt.Errorf("edge on a key store: %w", err)
	}
	return []string{fmt.Sprintf("the edge was restarted on EDGE_KEY_STORE=dir: (refresh %s, publish-ahead %s) before the load started", keyRefresh, keyPublishAhead)}, nil
}

// internalJWT asks the edge's ext_authz endpoint, as Emissary-ingress, to admit a balance
// read of replayUser with the external token tok and returns the internal JWT it minted. A
// 429 (the load spends the user's edge budget too) is waited out for its Retry-After, up to
// recoveryTimeout.
func (e *env) internalJWT(ctx context.Context, ingress *http.Client, tok string) (string, error) {
	deadline := time.Now().Add(recoveryTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.edge+"/authz/"+replayTenant+replayPath(), nil)
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := ingress.Do(req)
		if err != nil {
			return "", fmt.Errorf("ext_authz: %w", err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		internal := strings.TrimPrefix(resp.Header.Get("Authorization"), "Bearer ")
		if resp.StatusCode == http.StatusOK && internal != "" {
			return internal, nil
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			return "", fmt.Errorf("ext_authz for %s: %d, no internal token: %s", replayUser, resp.StatusCode, b)
		}
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(max(time.Duration(secs)*time.Second, 250*time.Millisecond)):
		}
	}
}

// result is a service's answer to a replayed token.
type result struct {
	status             int
	ctype, typ, detail string
	err                error
}

func (r result) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("%d %s (type %q, detail %q)", r.status, r.ctype, r.typ, r.detail)
}

// present sends the balance read to replayServer with tok as its internal JWT.
func (e *env) present(ctx context.Context, c *http.Client, tok string) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+e.st.Services[replayServer].Listen+replayPath(), nil)
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type")}
	var p struct{ Type, Detail string }
	if b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096)); json.Unmarshal(b, &p) == nil {
		r.typ, r.detail = p.Type, p.Detail
	}
	return r
}

// mint writes a genuine SVID of workload, from the SPIRE server's CA, under the stack's
// state directory.
func (e *env) mint(ctx context.Context, workload string) (string, error) {
	w, ok := e.st.Topo.Workload(workload)
	if !ok {
		return "", fmt.Errorf("no workload %s in the topology", workload)
	}
	dir := filepath.Join(e.dir, "svid", strings.ReplaceAll(workload, "/", "_"), strconv.FormatInt(time.Now().UnixNano(), 10))
	if err := e.st.Spire.Mint(ctx, w.ID, mintTTL, dir); err != nil {
		return "", fmt.Errorf("mint an SVID of %s: %w", workload, err)
	}
	return dir, nil
}

// edgeClientAs is a client of the edge's public listener presenting workload's SVID.
func (e *env) edgeClientAs(ctx context.Context, workload string) (*http.Client, error) {
	dir, err := e.mint(ctx, workload)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	tr := e.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	return &http.Client{Timeout: requestTimeout, Transport: tr}, nil
}

// directClient is an mTLS client holding caller's SVID that accepts only server's.
func (e *env) directClient(ctx context.Context, caller, server string) (*http.Client, error) {
	to, ok := e.st.Topo.Workload(server)
	if !ok {
		return nil, fmt.Errorf("no workload %s in the topology", server)
	}
	dir, err := e.mint(ctx, caller)
	if err != nil {
		return nil, err
	}
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), filepath.Join(dir, "bundle.pem"))
	if err != nil {
		return nil, err
	}
	// No keep-alive: every replay is a fresh handshake, as a replaying attacker's would be.
	tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(to.ID)), DisableKeepAlives: true}
	return &http.Client{Timeout: requestTimeout, Transport: tr}, nil
}

// kidAndExp reads a JWT's key ID and expiry without verifying it (the services do that).
func kidAndExp(tok string) (string, time.Time, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", time.Time{}, errors.New("internal JWT: not three parts")
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	for i, v := range []any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return "", time.Time{}, fmt.Errorf("internal JWT part %d: %w", i, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			return "", time.Time{}, fmt.Errorf("internal JWT part %d: %w", i, err)
		}
	}
	if hdr.Kid == "" || claims.Exp == 0 {
		return "", time.Time{}, errors.New("internal JWT without kid or exp")
	}
	return hdr.Kid, time.Unix(claims.Exp, 0), nil
}

// Service log lines that explain refusals of the restarted edge's tokens: a failed JWKS
// fetch (libs/usertoken RemoteKeys; the next one waits VerifierRefetch) and the refusals.
const (
	logFetchFailed = `"msg":"jwks fetch failed"`
	logRefused     = `"msg":"user token refused"`
)

// logCount is how many lines of each kind a service's log held.
type logCount struct{ fetchFailed, refused int }

func (e *env) countLogs() map[string]logCount {
	out := map[string]logCount{}
	for name, svc := range e.st.Services {
		b, _ := os.ReadFile(svc.LogPath)
		out[name] = logCount{strings.Count(string(b), logFetchFailed), strings.Count(string(b), logRefused)}
	}
	return out
}

// logsSince reports, per service, the JWKS fetch failures and token refusals logged since
// before was counted, with the first new fetch failure's line, so a row with 401s after the
// restart says why.
func (e *env) logsSince(before map[string]logCount) []string {
	var notes []string
	for name, now := range e.countLogs() {
		d := logCount{now.fetchFailed - before[name].fetchFailed, now.refused - before[name].refused}
		if d.fetchFailed == 0 && d.refused == 0 {
			continue
		}
		note := fmt.Sprintf("%s logged %d failed JWKS fetches and %d token refusals", name, d.fetchFailed, d.refused)
		if d.fetchFailed > 0 {
			b, _ := os.ReadFile(e.st.Services[name].LogPath)
			lines := slices.DeleteFunc(strings.Split(string(b), "\n"), func(l string) bool { return !strings.Contains(l, logFetchFailed) })
			if i := before[name].fetchFailed; i < len(lines) {
				note += " (first: " + jsonField(lines[i], "err") + ")"
			}
		}
		notes = append(notes, note)
	}
	slices.Sort(notes)
	return notes
}

// jsonField returns a string field of a JSON log line, or "" if it has none.
func jsonField(line, field string) string {
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil {
		return ""
	}
	v, _ := m[field].(string)
	return v
}
