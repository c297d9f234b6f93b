package devoidc

import (
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client IDs registered with the development provider.
const (
	// CLIClientID is the public client the CLI, the demo and the tests log users in with:
	// authorization code with PKCE (S256 required), refresh tokens, and a loopback redirect
	// URI on any port (RFC 8252, section 7.3).
	CLIClientID = "ztbank-cli"
	// ServiceClientID is the confidential client for the client-credentials grant. Its
	// secret is generated at start-up and written to the state directory.
	ServiceClientID = "ztbank-service"
)

// CLIRedirectURI is the redirect URI the headless login sends. Nothing needs to listen on
// it: the login reads the code from the Location header that points there.
const CLIRedirectURI = "http://127.0.0.1/callback"

// client is a registered OAuth client. It implements op.Client.
type client struct {
	id            string
	public        bool
	secret        credential // zero for the public client
	redirectURIs  []string
	grantTypes    []oidc.GrantType
	responseTypes []oidc.ResponseType
	idTokenTTL    time.Duration
}

func newCLIClient(idTokenTTL time.Duration) *client {
	return &client{
		id:            CLIClientID,
		public:        true,
		redirectURIs:  []string{CLIRedirectURI},
		grantTypes:    []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken},
		responseTypes: []oidc.ResponseType{oidc.ResponseTypeCode},
		idTokenTTL:    idTokenTTL,
	}
}

func newServiceClient(secret string, idTokenTTL time.Duration) *client {
	return &client{
		id:         ServiceClientID,
		secret:     newCredential(secret),
		grantTypes: []oidc.GrantType{oidc.GrantTypeClientCredentials},
		idTokenTTL: idTokenTTL,
	}
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return c.responseTypes
}
func (c *client) GrantTypes() []oidc.GrantType { return c.grantTypes }

// ApplicationType is native for the CLI so that op accepts its loopback redirect on any
// port, and web for the confidential client, which never redirects.
func (c *client) ApplicationType() op.ApplicationType {
	if c.public {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

// AuthMethod is "none" for the public client, which op then holds to PKCE at the token
// endpoint, and client_secret_basic for the confidential one.
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

// LoginURL is where op sends the browser for an auth request; it is relative to the issuer.
func (c *client) LoginURL(authRequestID string) string {
	return loginPath + "?" + authRequestIDParam + "=" + authRequestID
}

// AccessTokenType is JWT so that the edge verifies tokens offline against the JWKS, as it
// does for any external provider, instead of calling back to introspect them.
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.idTokenTTL }

// DevMode stays off: the loopback redirect is allowed by the native-client rules, and dev
// mode would also allow plain-HTTP redirects to other hosts.
func (c *client) DevMode() bool { return false }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

// IsScopeAllowed refuses every scope beyond the standard OIDC ones: the provider grants no
// API scopes, the edge derives permissions from tenant and roles.
func (c *client) IsScopeAllowed(string) bool { return false }

// IDTokenUserinfoClaimsAssertion is false: the ID token carries no profile claims and, above
// all, never the tenant or roles, so that it cannot stand in for an access token.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
