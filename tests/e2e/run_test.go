package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ztbank/ztbank/libs/demo"
)

// Observed is what the deployment did with one request.
type Observed struct {
	Status     int
	Layer      Layer
	DecisionID string
	Body       string
	Err        error // transport error, if any
}

// Expectation returns the comparable part of an observation.
func (o Observed) Expectation() Expectation { return Expectation{o.Status, o.Layer} }

// nonce is unique per run so that routes which create something never collide with an
// earlier run's data.
var nonce = func() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// request builds the HTTP request a case sends; path is relative to the edge or service.
func request(ctx context.Context, base string, c Case) (*http.Request, string, error) {
	t := c.Target
	t.Nonce = nonce
	path := c.Route.Expand(t.ID)
	if !c.Direct {
		path = "/" + c.Route.Tenant + path
	}
	var body io.Reader
	var bodyText string
	if c.Route.Body != nil {
		bodyText = c.Route.Body(t)
		body = strings.NewReader(bodyText)
	}
	req, err := http.NewRequestWithContext(ctx, c.Route.Method, base+path, body)
	if err != nil {
		return nil, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "e2e-"+nonce+"-"+hex.EncodeToString([]byte(c.Name()))[:32])
	}
	return req, path + " " + bodyText, nil
}

// run sends one case and classifies the answer. echo is what the caller itself sent (path
// and body), which a refusal may legitimately repeat.
func (d *deployment) run(ctx context.Context, c Case) (obs Observed, echo string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	client, base := d.edge, d.edgeURL
	if c.Direct {
		svc, ok := topo.Workload(c.Route.Service)
		addr, running := d.services[c.Route.Service]
		if !ok || !running {
			return obs, "", fmt.Errorf("service %s is not running in this deployment", c.Route.Service)
		}
		client, err = d.direct(ctx, c.Identity.Workload.ID, svc.ID)
		if err != nil {
			return obs, "", err
		}
		base = "https://" + addr
	}
	var sentEarlier string
	if c.Target.Kind == PaymentResource {
		if c.Target.ID, sentEarlier, err = d.paymentOf(ctx, c.Target.Owner); err != nil {
			return obs, "", err
		}
	}
	req, echo, err := request(ctx, base, c)
	if err != nil {
		return obs, "", err
	}
	if c.Identity.Kind == EndUser && c.Identity.User.Username == c.Target.Owner {
		// The payer chose the payee's account when making the payment, so seeing it in
		// their own payment is no leak.
		echo += " " + sentEarlier
	}
	if c.Identity.Kind == EndUser {
		tok, err := d.userToken(ctx, c.Identity.User.Username)
		if err != nil {
			return obs, "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return classify(client.Do(req)), echo, nil
}

// classify names the layer that answered from what the system exposes: a handshake
// refusal is mTLS; a 403 with a decision_id is the policy; the edge's 401 carries its realm
// and its 403 no decision_id; a service's 401 is its internal-JWT check.
func classify(resp *http.Response, err error) Observed {
	if err != nil {
		if strings.Contains(err.Error(), "tls:") {
			return Observed{Layer: LayerMTLS, Err: err}
		}
		return Observed{Layer: Layer("transport"), Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	o := Observed{Status: resp.StatusCode, Body: string(b)}
	var problem struct {
		DecisionID string `json:"decision_id"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(b, &problem)
	}
	o.DecisionID = problem.DecisionID
	www := resp.Header.Get("WWW-Authenticate")
	switch {
	case resp.StatusCode < 300:
		o.Layer = LayerNone
	case resp.StatusCode == http.StatusNotFound:
		o.Layer = LayerNotFound
	case resp.StatusCode == http.StatusUnprocessableEntity:
		o.Layer = LayerRule
	case resp.StatusCode == http.StatusForbidden && o.DecisionID != "":
		o.Layer = LayerPolicy
	case resp.StatusCode == http.StatusUnauthorized && strings.Contains(www, "invalid_token"):
		o.Layer = LayerJWT
	case resp.StatusCode == http.StatusUnauthorized && strings.Contains(www, `realm="ztbank"`):
		o.Layer = LayerEdge
	case resp.StatusCode == http.StatusForbidden:
		// The edge's refusals are problem+json without a decision: it decides on the token and
		// tenant alone. A service's 403 always carries the policy's decision ID.
		o.Layer = LayerEdge
	default:
		o.Layer = Layer(fmt.Sprintf("unexpected-%d", resp.StatusCode))
	}
	return o
}

// leaks returns the foreign strings that appear in body but not in what the caller sent.
func leaks(body, echo string, foreign []string) []string {
	var out []string
	for _, f := range foreign {
		if strings.Contains(body, f) && !strings.Contains(echo, f) {
			out = append(out, f)
		}
	}
	return out
}

// paymentOf returns the ID of a payment owner made in this run, making it on first use:
// through the edge, with the owner's own token, one minor unit from their first account.
// Payment IDs are the server's, so the generated cases carry a placeholder until now.
func (d *deployment) paymentOf(ctx context.Context, owner string) (id, body string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.payments[owner]; ok {
		return p[0], p[1], nil
	}
	u, ok := demo.UserByName(owner)
	if !ok {
		return "", "", fmt.Errorf("no demo user %s", owner)
	}
	var from string
	for _, a := range demo.Accounts() {
		if a.Owner == owner {
			from = a.ID.String()
			break
		}
	}
	d.mu.Unlock()
	tok, err := d.userToken(ctx, owner)
	d.mu.Lock()
	if err != nil {
		return "", "", err
	}
	body = `{"from_account":"` + from + `","to_account":"` + payee(from) + `","amount":{"amount":1,"currency":"EUR"},"reference":"e2e-fixture"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.edgeURL+"/"+u.Tenant+"/v1/payments", strings.NewReader(body))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "e2e-fixture-"+nonce+"-"+owner)
	resp, err := d.edge.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("fixture payment for %s: %w", owner, err)
	}
	defer resp.Body.Close()
	var p struct {
		ID string `json:"id"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &p) != nil || p.ID == "" {
		return "", "", fmt.Errorf("fixture payment for %s: %d %s", owner, resp.StatusCode, raw)
	}
	if d.payments == nil {
		d.payments = map[string][2]string{}
	}
	d.payments[owner] = [2]string{p.ID, body}
	return p.ID, body, nil
}
