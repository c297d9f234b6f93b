package devoidc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Lifetimes of the provider's short-lived state.
const (
	// authRequestTTL bounds the time between /authorize and the code exchange.
	authRequestTTL = 5 * time.Minute
	// maxLoginFailures ends an auth request after this many wrong passwords, so that one
	// request cannot be used to guess a password at leisure.
	maxLoginFailures = 5
)

// errNotFound is returned for unknown or expired requests, codes, tokens and clients; op
// turns it into the OAuth error its endpoint calls for.
var errNotFound = errors.New("devoidc: not found")

// storage is the provider's in-memory op.Storage: everything it holds dies with the process,
// which is what a development provider whose keys are generated at start-up wants anyway.
type storage struct {
	audience        string
	accessTokenTTL  time.Duration
	refreshTokenTTL time.Duration
	key             *signingKey
	now             func() time.Time

	users   map[string]User // by ID
	byName  map[string]string
	pwds    map[string]credential // by user ID
	clients map[string]*client

	mu            sync.Mutex
	authRequests  map[string]*authRequest
	codes         map[string]string // code → auth request ID
	accessTokens  map[string]accessToken
	refreshTokens map[string]*refreshToken
}

// authRequest is one pending authorization. It implements op.AuthRequest; storage hands op
// copies, so op never reads a request while the login handler writes it.
type authRequest struct {
	id            string
	created       time.Time
	clientID      string
	redirectURI   string
	state         string
	nonce         string
	scopes        []string
	audience      []string
	responseType  oidc.ResponseType
	responseMode  oidc.ResponseMode
	codeChallenge *oidc.CodeChallenge

	userID   string
	authTime time.Time
	done     bool
	failures int
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return amr(a.done) }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.codeChallenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.userID }
func (a *authRequest) Done() bool                            { return a.done }

func amr(loggedIn bool) []string {
	if loggedIn {
		return []string{"pwd"}
	}
	return nil
}

func (a *authRequest) snapshot() *authRequest {
	c := *a
	c.scopes = slices.Clone(a.scopes)
	c.audience = slices.Clone(a.audience)
	return &c
}

// accessToken records an issued access token so the userinfo, introspection and revocation
// endpoints can find it by its jti.
type accessToken struct {
	subject   string
	clientID  string
	audience  []string
	scopes    []string
	expiresAt time.Time
}

// refreshToken is one refresh token. It implements op.RefreshTokenRequest. Each use rotates
// it: the presented token is deleted and a new one issued, so a stolen token works once.
type refreshToken struct {
	token     string
	userID    string
	clientID  string
	audience  []string
	scopes    []string
	authTime  time.Time
	expiresAt time.Time
}

func (r *refreshToken) GetAMR() []string                 { return amr(true) }
func (r *refreshToken) GetAudience() []string            { return r.audience }
func (r *refreshToken) GetAuthTime() time.Time           { return r.authTime }
func (r *refreshToken) GetClientID() string              { return r.clientID }
func (r *refreshToken) GetScopes() []string              { return r.scopes }
func (r *refreshToken) GetSubject() string               { return r.userID }
func (r *refreshToken) SetCurrentScopes(scopes []string) { r.scopes = scopes }

// clientTokenRequest is the token request of a client-credentials grant: the client is the
// subject and there is no user.
type clientTokenRequest struct {
	clientID string
	audience []string
	scopes   []string
}

func (c *clientTokenRequest) GetSubject() string    { return c.clientID }
func (c *clientTokenRequest) GetAudience() []string { return c.audience }
func (c *clientTokenRequest) GetScopes() []string   { return c.scopes }

func newStorage(cfg Config, key *signingKey, passwords map[string]string, clients ...*client) *storage {
	s := &storage{
		audience:        cfg.Audience,
		accessTokenTTL:  cfg.AccessTokenTTL,
		refreshTokenTTL: cfg.RefreshTokenTTL,
		key:             key,
		now:             time.Now,
		users:           map[string]User{},
		byName:          map[string]string{},
		pwds:            map[string]credential{},
		clients:         map[string]*client{},
		authRequests:    map[string]*authRequest{},
		codes:           map[string]string{},
		accessTokens:    map[string]accessToken{},
		refreshTokens:   map[string]*refreshToken{},
	}
	for _, u := range cfg.Users {
		s.users[u.ID()] = u
		s.byName[u.Username] = u.ID()
		s.pwds[u.ID()] = newCredential(passwords[u.Username])
	}
	for _, c := range clients {
		s.clients[c.id] = c
	}
	return s
}

// CreateAuthRequest stores a validated authorization request. Beyond what op checks, it
// requires PKCE with S256 from every client: the plain method protects nothing against an
// attacker who can read the authorization request.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		// The provider keeps no browser sessions, so it can never log in without a prompt.
		return nil, oidc.ErrLoginRequired()
	}
	a := &authRequest{
		id:            uuid.NewString(),
		created:       s.now(),
		clientID:      req.ClientID,
		redirectURI:   req.RedirectURI,
		state:         req.State,
		nonce:         req.Nonce,
		scopes:        slices.Clone(req.Scopes),
		audience:      []string{req.ClientID, s.audience},
		responseType:  req.ResponseType,
		responseMode:  req.ResponseMode,
		codeChallenge: &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	s.authRequests[a.id] = a
	return a.snapshot(), nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.liveAuthRequestLocked(id)
	if !ok {
		return nil, errNotFound
	}
	return a.snapshot(), nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.liveAuthRequestLocked(s.codes[code])
	if !ok || !a.done {
		return nil, errNotFound
	}
	return a.snapshot(), nil
}

func (s *storage) liveAuthRequestLocked(id string) (*authRequest, bool) {
	a, ok := s.authRequests[id]
	if !ok || s.now().Sub(a.created) > authRequestTTL {
		return nil, false
	}
	return a, true
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.liveAuthRequestLocked(id); !ok {
		return errNotFound
	}
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest is called by op once the code has been exchanged; deleting the code
// with the request is what makes a code single-use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteAuthRequestLocked(id)
	return nil
}

func (s *storage) deleteAuthRequestLocked(id string) {
	delete(s.authRequests, id)
	for code, reqID := range s.codes {
		if reqID == id {
			delete(s.codes, code)
		}
	}
}

// checkLogin verifies a username and password for a pending auth request and, if they
// match, completes the request for that user. It returns errLoginFailed for a wrong
// username or password alike, so the form does not reveal which users exist.
func (s *storage) checkLogin(authRequestID, username, password string) error {
	userID, known := s.byName[username]
	// Compare even for an unknown user so both cases take the same time.
	ok := s.pwds[userID].matches(password) && known
	s.mu.Lock()
	defer s.mu.Unlock()
	a, live := s.liveAuthRequestLocked(authRequestID)
	if !live || a.done {
		return errNotFound
	}
	if !ok {
		a.failures++
		if a.failures >= maxLoginFailures {
			s.deleteAuthRequestLocked(a.id)
			return errTooManyFailures
		}
		return errLoginFailed
	}
	a.userID, a.authTime, a.done = userID, s.now(), true
	return nil
}

func (s *storage) newAccessTokenLocked(subject, clientID string, audience, scopes []string) (string, time.Time) {
	id := uuid.NewString()
	exp := s.now().Add(s.accessTokenTTL)
	s.accessTokens[id] = accessToken{subject: subject, clientID: clientID, audience: audience, scopes: scopes, expiresAt: exp}
	return id, exp
}

func clientIDOf(req op.TokenRequest) string {
	switch r := req.(type) {
	case op.AuthRequest:
		return r.GetClientID()
	case op.RefreshTokenRequest:
		return r.GetClientID()
	case *clientTokenRequest:
		return r.clientID
	}
	return ""
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, exp := s.newAccessTokenLocked(req.GetSubject(), clientIDOf(req), req.GetAudience(), req.GetScopes())
	return id, exp, nil
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	next := &refreshToken{token: randomSecret(), expiresAt: now.Add(s.refreshTokenTTL)}
	switch r := req.(type) {
	case op.AuthRequest:
		next.userID, next.clientID, next.authTime = r.GetSubject(), r.GetClientID(), r.GetAuthTime()
		next.audience, next.scopes = slices.Clone(r.GetAudience()), slices.Clone(r.GetScopes())
	case *refreshToken:
		old, ok := s.refreshTokens[current]
		if !ok || now.After(old.expiresAt) {
			// Lost a race with a concurrent use of the same token: the client gets the
			// invalid_grant a replayed token deserves, not a server error.
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used or expired")
		}
		delete(s.refreshTokens, current)
		next.userID, next.clientID, next.authTime = old.userID, old.clientID, old.authTime
		next.audience, next.scopes = old.audience, slices.Clone(r.scopes)
		// The family lives as long as the first token did; rotation does not extend it.
		next.expiresAt = old.expiresAt
	default:
		return "", "", time.Time{}, fmt.Errorf("devoidc: refresh token for %T", req)
	}
	s.refreshTokens[next.token] = next
	id, exp := s.newAccessTokenLocked(next.userID, next.clientID, next.audience, next.scopes)
	return id, next.token, exp, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refreshTokens[token]
	if !ok || s.now().After(r.expiresAt) {
		return nil, op.ErrInvalidRefreshToken
	}
	c := *r
	c.scopes = slices.Clone(r.scopes)
	return &c, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, r := range s.refreshTokens {
		if r.userID == userID && r.clientID == clientID {
			delete(s.refreshTokens, t)
		}
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refreshTokens[token]
	if !ok || r.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return r.userID, r.token, nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, userID, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.refreshTokens[tokenOrID]; ok {
		if r.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refreshTokens, tokenOrID)
		return nil
	}
	if t, ok := s.accessTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
	}
	// RFC 7009: an unknown token is not an error.
	return nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{s.key.alg}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errNotFound
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.public || !c.secret.matches(secret) {
		return errNotFound
	}
	return nil
}

func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.clients[id], nil
}

func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	return &clientTokenRequest{clientID: id, audience: []string{s.audience}, scopes: scopes}, nil
}

func (s *storage) SetUserinfoFromScopes(_ context.Context, info *oidc.UserInfo, userID, _ string, scopes []string) error {
	u, ok := s.users[userID]
	if !ok {
		return errNotFound
	}
	info.Subject = userID
	for _, scope := range scopes {
		switch scope {
		case oidc.ScopeEmail:
			info.Email, info.EmailVerified = u.Email(), true
		case oidc.ScopeProfile:
			info.PreferredUsername, info.Name = u.Username, u.Name
		}
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject || s.now().After(t.expiresAt) {
		return errNotFound
	}
	return s.SetUserinfoFromScopes(ctx, info, subject, t.clientID, t.scopes)
}

func (s *storage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject || s.now().After(t.expiresAt) {
		return nil // inactive
	}
	resp.Active = true
	resp.Subject = subject
	resp.ClientID = t.clientID
	resp.Audience = t.audience
	resp.Scope = t.scopes
	resp.Expiration = oidc.FromTime(t.expiresAt)
	if u, ok := s.users[subject]; ok {
		resp.Username = u.Username
	}
	return nil
}

// GetPrivateClaimsFromScopes adds the claims the edge maps a user by: the tenant, the roles
// and the e-mail address. A client-credentials token has no user and gets none of them, so
// it can never pass for a tenant's user.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, userID, _ string, _ []string) (map[string]any, error) {
	u, ok := s.users[userID]
	if !ok {
		return nil, nil
	}
	return map[string]any{
		"tenant":             u.Tenant(),
		"roles":              slices.Clone(u.Roles),
		"email":              u.Email(),
		"preferred_username": u.Username,
	}, nil
}

// GetKeyByIDAndClientID finds no key: no client is registered for the JWT profile grant.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotFound
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnauthorizedClient()
}

func (s *storage) Health(context.Context) error { return nil }

// pruneLocked drops expired state so a long-running dev stack does not grow without bound.
func (s *storage) pruneLocked() {
	now := s.now()
	for id, a := range s.authRequests {
		if now.Sub(a.created) > authRequestTTL {
			s.deleteAuthRequestLocked(id)
		}
	}
	for id, t := range s.accessTokens {
		if now.After(t.expiresAt) {
			delete(s.accessTokens, id)
		}
	}
	for id, r := range s.refreshTokens {
		if now.After(r.expiresAt) {
			delete(s.refreshTokens, id)
		}
	}
}
