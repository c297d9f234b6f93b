package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ztbank/ztbank/devkit/demo"
)

// Observed is what the deployment did with one request.
type Observed struct {
	Status      int
	Layer       Layer
	ProblemType string // the problem+json type, the refusing layer's mark
	DecisionID  string
	Body        string
	ContentType string
	Alert       string // the TLS alert the server sent, when it refused the handshake
	Err         error  // transport error, if any
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

// caseNonce is unique per run and per case: what a case creates (an account name, a payment
// or posting reference, an Idempotency-Key) collides neither with an earlier run nor with
// another case of this run.
func caseNonce(c Case) string {
	sum := sha256.Sum256([]byte(c.Name()))
	return nonce + "-" + hex.EncodeToString(sum[:6])
}

// request builds the HTTP request a case sends; path is relative to the edge or service.
func request(ctx context.Context, base string, c Case) (*http.Request, string, error) {
	t := c.Target
	t.Nonce = caseNonce(c)
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
		req.Header.Set("Idempotency-Key", "e2e-"+t.Nonce)
	}
	return req, path + " " + bodyText, nil
}

// run sends one case and classifies the answer. echo is what the caller itself sent (path
// and body), which a refusal may legitimately repeat.
func (d *deployment) run(ctx context.Context, c Case) (obs Observed, echo string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if c.Edge != nil {
		return d.runEdge(ctx, c)
	}
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
	if c.Call != nil {
		u, _ := demo.UserByName(c.Call.User)
		tok, err := d.internalToken(ctx, c.Call.User, u.Tenant)
		if err != nil {
			return obs, "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if c.Call.User == c.Target.Owner {
			echo += " " + sentEarlier
		}
	}
	return do(client, req), echo, nil
}

// runEdge sends an edge case: a request to the edge's public listener, with the client SVID
// and the user's external access token the call names.
func (d *deployment) runEdge(ctx context.Context, c Case) (Observed, string, error) {
	client := d.edge
	if c.Edge.ClientSVID != "" {
		var err error
		if client, err = d.edgeAs(ctx, c.Edge.ClientSVID); err != nil {
			return Observed{}, "", err
		}
	}
	req, err := http.NewRequestWithContext(ctx, c.Edge.Method, d.edgeURL+c.Edge.Path, nil)
	if err != nil {
		return Observed{}, "", err
	}
	if c.Edge.User != "" {
		tok, err := d.userToken(ctx, c.Edge.User)
		if err != nil {
			return Observed{}, "", err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return classify(client.Do(req)), c.Edge.Path, nil
}

// classify names the layer that answered from the mark that layer leaves, never from the
// status code: a TLS alert the server sent during the handshake is the mTLS layer (the
// server's own refusal counter, checked per service in TestIsolation, says why it refused);
// a problem+json body names its layer in its type (libs/problem's refusal marks); a 2xx is
// an answer. Anything else is reported as what it is and fails the case.
func classify(resp *http.Response, err error) Observed {
	if err != nil {
		if a := remoteAlert(err); a != "" {
			return classifyParts(0, "", nil, a, err)
		}
		return Observed{Layer: Layer("transport"), Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return classifyParts(resp.StatusCode, resp.Header.Get("Content-Type"), b, "", nil)
}

// alertBadCertificate is what crypto/tls sends when the server's certificate verification
// (go-spiffe's chain check and the allowlist authorizer) refuses the client's SVID.
const alertBadCertificate = "tls: bad certificate"

// classifyParts is classify on the parts of an answer, so the suite can re-mark a real
// answer and check that the assertion notices (see remarked).
func classifyParts(status int, contentType string, body []byte, alert string, err error) Observed {
	if alert != "" {
		o := Observed{Alert: alert, Err: err, Layer: Layer("tls-alert " + alert)}
		if alert == alertBadCertificate {
			o.Layer = LayerMTLS
		}
		return o
	}
	o := Observed{Status: status, Body: string(body), ContentType: contentType}
	var p struct {
		Type       string `json:"type"`
		Status     int    `json:"status"`
		DecisionID string `json:"decision_id"`
	}
	isProblem := strings.HasPrefix(contentType, "application/problem+json") && json.Unmarshal(body, &p) == nil
	if isProblem {
		o.ProblemType, o.DecisionID = p.Type, p.DecisionID
	}
	switch layer, marked := layerOfMark(o.ProblemType); {
	case status >= 200 && status < 300 && !isProblem:
		o.Layer = LayerNone
	case !isProblem:
		o.Layer = Layer(fmt.Sprintf("unmarked %d %s", status, contentType))
	case p.Status != status:
		o.Layer = Layer(fmt.Sprintf("problem status %d on a %d answer", p.Status, status))
	case !marked:
		o.Layer = Layer("unknown mark " + o.ProblemType)
	default:
		o.Layer = layer
	}
	return o
}

// remarked is the answer o as it would read had layer written it: the same status and body
// under another layer's mark (or, for the handshake, another alert). The suite asserts that
// its comparison fails on it, which is what makes the layer column mean something.
func remarked(o Observed, layer Layer) Observed {
	if layer == LayerMTLS {
		if o.Alert == alertBadCertificate {
			return classifyParts(0, "", nil, "tls: certificate required", o.Err)
		}
		return classifyParts(0, "", nil, alertBadCertificate, o.Err)
	}
	if o.Alert != "" {
		// A handshake refusal re-marked as a layer that answers over HTTP: the same status
		// the expectation names, under that layer's type.
		body, _ := json.Marshal(map[string]any{"type": layerMarks[layer], "status": http.StatusForbidden, "title": "Forbidden"})
		return classifyParts(http.StatusForbidden, "application/problem+json", body, "", nil)
	}
	var m map[string]any
	if json.Unmarshal([]byte(o.Body), &m) != nil || m == nil {
		m = map[string]any{"status": o.Status, "title": http.StatusText(o.Status)}
	}
	m["type"] = layerMarks[layer]
	body, _ := json.Marshal(m)
	return classifyParts(o.Status, "application/problem+json", body, "", nil)
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
