package devoidc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// Tokens is a token endpoint response.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	TokenType    string
	// Expiry is when the access token expires, computed from expires_in on receipt.
	Expiry time.Time
}

// ErrLoginRejected reports that the provider refused the username and password.
var ErrLoginRejected = errors.New("devoidc: login rejected")

// OAuthError is an error response from an OAuth endpoint (RFC 6749, section 5.2).
type OAuthError struct {
	Status      int
	Code        string // "invalid_grant", "invalid_client", ...
	Description string
}

func (e *OAuthError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("oauth error %s (HTTP %d)", e.Code, e.Status)
	}
	return fmt.Sprintf("oauth error %s (HTTP %d): %s", e.Code, e.Status, e.Description)
}

// maxRedirects bounds the redirect chain of a login; the provider needs three.
const maxRedirects = 10

// Login logs username in through the provider's real endpoints, as a browser and a native
// app together would: discovery, /authorize with PKCE (S256), state and nonce, the login
// form, the callback, then the code exchange at the token endpoint. It does not need a
// listener on the redirect URI: it reads the code from the Location header pointing there.
//
// The client must trust the provider's certificate; Login does not follow redirects with
// it but handles each hop itself, so redirect policy set on the client is ignored.
func Login(ctx context.Context, client *http.Client, issuer, clientID, username, password string) (Tokens, error) {
	code, verifier, err := authorize(ctx, client, issuer, clientID, username, password)
	if err != nil {
		return Tokens{}, err
	}
	return exchangeCode(ctx, client, clientID, code, verifier)
}

// Refresh redeems a refresh token for new tokens. The provider rotates refresh tokens, so
// the returned RefreshToken replaces the one passed in, which no longer works.
func Refresh(ctx context.Context, client *http.Client, issuer, clientID, refreshToken string) (Tokens, error) {
	d, err := discover(ctx, client, issuer)
	if err != nil {
		return Tokens{}, err
	}
	return token(ctx, client, d.TokenEndpoint, url.Values{
		"grant_type":    {"refresh_token"},
		"client_id":     {clientID},
		"refresh_token": {refreshToken},
	}, nil)
}

// ClientCredentials obtains an access token for a confidential client (no user).
func ClientCredentials(ctx context.Context, client *http.Client, issuer, clientID, clientSecret string) (Tokens, error) {
	d, err := discover(ctx, client, issuer)
	if err != nil {
		return Tokens{}, err
	}
	return token(ctx, client, d.TokenEndpoint, url.Values{"grant_type": {"client_credentials"}},
		func(r *http.Request) {
			// RFC 6749 section 2.3.1: form-encode the credentials before Basic encoding.
			r.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
		})
}

// discovery is the part of the provider metadata the headless client uses.
type discovery struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
}

func discover(ctx context.Context, client *http.Client, issuer string) (discovery, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return discovery{}, fmt.Errorf("devoidc: discovery: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return discovery{}, fmt.Errorf("devoidc: discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return discovery{}, fmt.Errorf("devoidc: discovery: HTTP %d", resp.StatusCode)
	}
	var d discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return discovery{}, fmt.Errorf("devoidc: discovery: %w", err)
	}
	// OIDC Discovery section 4.3: the metadata must name the issuer we asked, or someone
	// else's endpoints could be substituted.
	if d.Issuer != issuer {
		return discovery{}, fmt.Errorf("devoidc: discovery: issuer %q does not match %q", d.Issuer, issuer)
	}
	return d, nil
}

// authCode is the outcome of the front channel: the code, the nonce the ID token must carry
// and the token endpoint to redeem the code at.
type authCode struct{ code, nonce, tokenEndpoint string }

// authorize runs the front-channel half of the login and returns the authorization code
// and the PKCE verifier that redeems it.
func authorize(ctx context.Context, client *http.Client, issuer, clientID, username, password string) (authCode, string, error) {
	d, err := discover(ctx, client, issuer)
	if err != nil {
		return authCode{}, "", err
	}
	verifier, state, nonce := randomSecret(), randomSecret(), randomSecret()
	challenge := sha256.Sum256([]byte(verifier))
	authURL, err := url.Parse(d.AuthorizationEndpoint)
	if err != nil {
		return authCode{}, "", fmt.Errorf("devoidc: authorization endpoint: %w", err)
	}
	authURL.RawQuery = url.Values{
		"client_id":             {clientID},
		"response_type":         {"code"},
		"redirect_uri":          {CLIRedirectURI},
		"scope":                 {"openid profile email offline_access"},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}.Encode()

	noFollow := *client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	b := &browser{client: &noFollow, origin: originOf(authURL)}

	resp, err := b.follow(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return authCode{}, "", err
	}
	if resp.redirect != nil {
		// A redirect straight to the client means the provider refused the request.
		return authCode{}, "", callbackError(resp.redirect, state)
	}
	if resp.status != http.StatusOK {
		// op answers an unusable request (unknown client, unregistered redirect URI) with
		// an error page instead of redirecting to a redirect URI it cannot trust.
		return authCode{}, "", fmt.Errorf("devoidc: authorize answered HTTP %d: %.200q", resp.status, resp.body)
	}
	action, fields, err := parseLoginForm(resp.body)
	if err != nil {
		return authCode{}, "", err
	}
	fields.Set("username", username)
	fields.Set("password", password)
	resp, err = b.follow(ctx, http.MethodPost, resp.url.ResolveReference(action), fields)
	if err != nil {
		return authCode{}, "", err
	}
	if resp.redirect == nil {
		if resp.status == http.StatusUnauthorized || resp.status == http.StatusTooManyRequests {
			return authCode{}, "", fmt.Errorf("%w for %s", ErrLoginRejected, username)
		}
		return authCode{}, "", fmt.Errorf("devoidc: login form answered HTTP %d", resp.status)
	}
	if err := callbackError(resp.redirect, state); err != nil {
		return authCode{}, "", err
	}
	return authCode{code: resp.redirect.Query().Get("code"), nonce: nonce, tokenEndpoint: d.TokenEndpoint}, verifier, nil
}

// callbackError checks a redirect to the client: it must carry our state, and either an
// error or a code.
func callbackError(u *url.URL, state string) error {
	q := u.Query()
	if e := q.Get("error"); e != "" {
		return &OAuthError{Status: http.StatusFound, Code: e, Description: q.Get("error_description")}
	}
	if q.Get("state") != state {
		return errors.New("devoidc: authorization response state does not match the request")
	}
	if q.Get("code") == "" {
		return errors.New("devoidc: authorization response has no code")
	}
	return nil
}

// browser follows redirects within the provider's origin and stops at the first redirect
// that leaves it, which is the redirect to the client.
type browser struct {
	client *http.Client
	origin string
}

type page struct {
	url      *url.URL
	status   int
	body     []byte
	redirect *url.URL // set when the chain ended at a redirect away from the provider
}

func (b *browser) follow(ctx context.Context, method string, u *url.URL, form url.Values) (page, error) {
	for range maxRedirects {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
		if err != nil {
			return page{}, fmt.Errorf("devoidc: login: %w", err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := b.client.Do(req)
		if err != nil {
			return page{}, fmt.Errorf("devoidc: login: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return page{}, fmt.Errorf("devoidc: login: %w", err)
		}
		if resp.StatusCode < 300 || resp.StatusCode > 399 {
			return page{url: u, status: resp.StatusCode, body: data}, nil
		}
		loc, err := resp.Location()
		if err != nil {
			return page{}, fmt.Errorf("devoidc: login: redirect without location: %w", err)
		}
		if originOf(loc) != b.origin {
			return page{url: u, status: resp.StatusCode, redirect: loc}, nil
		}
		u, method, form = loc, http.MethodGet, nil
	}
	return page{}, errors.New("devoidc: login: too many redirects")
}

func originOf(u *url.URL) string { return u.Scheme + "://" + u.Host }

// parseLoginForm finds the first form in an HTML page and returns its action and the values
// of its inputs, as a browser would submit them.
func parseLoginForm(body []byte) (*url.URL, url.Values, error) {
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		return nil, nil, fmt.Errorf("devoidc: login page: %w", err)
	}
	var form *html.Node
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == "form" {
			form = n
			break
		}
	}
	if form == nil {
		return nil, nil, errors.New("devoidc: login page has no form")
	}
	if m := attr(form, "method"); !strings.EqualFold(m, "post") {
		return nil, nil, fmt.Errorf("devoidc: login form method is %q, want post", m)
	}
	action, err := url.Parse(attr(form, "action"))
	if err != nil {
		return nil, nil, fmt.Errorf("devoidc: login form action: %w", err)
	}
	fields := url.Values{}
	for n := range form.Descendants() {
		if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") != "" {
			fields.Set(attr(n, "name"), attr(n, "value"))
		}
	}
	return action, fields, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func exchangeCode(ctx context.Context, client *http.Client, clientID string, code authCode, verifier string) (Tokens, error) {
	t, err := token(ctx, client, code.tokenEndpoint, url.Values{
		"grant_type":    {"authorization_code"},
		"client_id":     {clientID},
		"code":          {code.code},
		"redirect_uri":  {CLIRedirectURI},
		"code_verifier": {verifier},
	}, nil)
	if err != nil {
		return Tokens{}, err
	}
	// The nonce binds the ID token to this login. The token came straight from the token
	// endpoint over verified TLS, so its payload is read here without checking the signature.
	if got, err := unverifiedClaim(t.IDToken, "nonce"); err != nil || got != code.nonce {
		return Tokens{}, errors.New("devoidc: ID token nonce does not match the login")
	}
	return t, nil
}

func token(ctx context.Context, client *http.Client, tokenEndpoint string, form url.Values, auth func(*http.Request)) (Tokens, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return Tokens{}, fmt.Errorf("devoidc: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != nil {
		auth(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Tokens{}, fmt.Errorf("devoidc: token request: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken      string `json:"access_token"`
		RefreshToken     string `json:"refresh_token"`
		IDToken          string `json:"id_token"`
		TokenType        string `json:"token_type"`
		ExpiresIn        int64  `json:"expires_in"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return Tokens{}, fmt.Errorf("devoidc: token response (HTTP %d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || body.Error != "" {
		return Tokens{}, &OAuthError{Status: resp.StatusCode, Code: body.Error, Description: body.ErrorDescription}
	}
	if body.AccessToken == "" {
		return Tokens{}, errors.New("devoidc: token response has no access token")
	}
	return Tokens{
		AccessToken:  body.AccessToken,
		RefreshToken: body.RefreshToken,
		IDToken:      body.IDToken,
		TokenType:    body.TokenType,
		Expiry:       time.Now().Add(time.Duration(body.ExpiresIn) * time.Second),
	}, nil
}

func unverifiedClaim(jwt, name string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", errors.New("not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	s, _ := claims[name].(string)
	return s, nil
}
