// Package rdsiam supplies RDS IAM authentication tokens as database credentials. A token is
// a SigV4-presigned "connect" request for one host, port, region and user, valid for 15
// minutes; RDS accepts it as the password, over TLS only.
package rdsiam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"

	"github.com/ztbank/ztbank/libs/dbcred"
)

// TokenLifetime is the validity of an RDS IAM token (X-Amz-Expires=900).
const TokenLifetime = 15 * time.Minute

// DefaultSkew is how long before expiry a cached token is replaced. It covers clock skew and
// the time a connection attempt takes after the token is handed out.
const DefaultSkew = 3 * time.Minute

// Source mints and caches RDS IAM tokens. It is safe for concurrent use; concurrent callers
// share one signing.
type Source struct {
	endpoint, region, user string
	creds                  aws.CredentialsProvider
	now                    func() time.Time
	skew                   time.Duration
	lifetime               time.Duration

	mu     sync.Mutex
	cached dbcred.Credential
}

// Option configures New.
type Option func(*Source)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Source) { s.now = now } }

// WithSkew sets how long before expiry a token is renewed. It must be under the token
// lifetime.
func WithSkew(d time.Duration) Option { return func(s *Source) { s.skew = d } }

// WithTokenLifetime replaces TokenLifetime, for tests that scale time down against a fake
// RDS honouring the same lifetime (devkit/awsfake.RDSIAM). RDS itself honours 15 minutes
// whatever the token says; never shorten it elsewhere.
func WithTokenLifetime(d time.Duration) Option { return func(s *Source) { s.lifetime = d } }

// New returns a Source for user at endpoint ("host:port") in region, signing with creds.
func New(endpoint, region, user string, creds aws.CredentialsProvider, opts ...Option) (*Source, error) {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil || host == "" || port == "" {
		return nil, fmt.Errorf("rdsiam: endpoint %q must be host:port", endpoint)
	}
	if region == "" || user == "" {
		return nil, errors.New("rdsiam: region and user are required")
	}
	if creds == nil {
		return nil, errors.New("rdsiam: nil credentials provider")
	}
	s := &Source{endpoint: endpoint, region: region, user: user, creds: creds, now: time.Now, skew: DefaultSkew, lifetime: TokenLifetime}
	for _, opt := range opts {
		opt(s)
	}
	if s.lifetime <= 0 || s.lifetime > TokenLifetime {
		return nil, fmt.Errorf("rdsiam: token lifetime %v must be in (0, %v]", s.lifetime, TokenLifetime)
	}
	if s.skew < 0 || s.skew >= s.lifetime {
		return nil, fmt.Errorf("rdsiam: skew %v must be in [0, %v)", s.skew, s.lifetime)
	}
	return s, nil
}

// NewFromDefaultChain is New with credentials from the AWS default chain: environment, shared
// config, web identity, and in EKS the Pod Identity agent. The chain's own cache refreshes
// the underlying temporary credentials.
func NewFromDefaultChain(ctx context.Context, endpoint, region, user string, opts ...Option) (*Source, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("rdsiam: load AWS config: %w", err)
	}
	return New(endpoint, region, user, cfg.Credentials, opts...)
}

// Token returns the cached token while it has more than the skew margin left, and otherwise
// signs a new one.
func (s *Source) Token(ctx context.Context) (dbcred.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cached.Password != "" && now.Before(s.cached.ExpiresAt.Add(-s.skew)) {
		return s.cached, nil
	}
	creds, err := s.creds.Retrieve(ctx)
	if err != nil {
		return dbcred.Credential{}, fmt.Errorf("rdsiam: retrieve AWS credentials: %w", err)
	}
	// A token signed with temporary credentials dies with them, even if X-Amz-Expires says
	// otherwise, so the cache must not outlive the credentials either.
	expires := now.Add(s.lifetime)
	if creds.CanExpire && creds.Expires.Before(expires) {
		expires = creds.Expires
	}
	fixed := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
	tok, err := auth.BuildAuthToken(ctx, s.endpoint, s.region, s.user, fixed)
	if err != nil {
		return dbcred.Credential{}, fmt.Errorf("rdsiam: build token: %w", err)
	}
	s.cached = dbcred.Credential{Password: tok, ExpiresAt: expires}
	return s.cached, nil
}
