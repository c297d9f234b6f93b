package devoidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// Signing algorithms the provider can sign access and ID tokens with. Both are in the
// edge's allowlist (DESIGN.md §5); RS256 is the default because it is what most hosted
// providers (Cognito, Okta, Auth0) sign with.
const (
	RS256 = string(jose.RS256)
	ES256 = string(jose.ES256)
)

// signingKey is the provider's token signing key, generated at start-up and never written
// to disk: tokens die with the process, so a restart is a full key rotation.
type signingKey struct {
	id  string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func newSigningKey(alg string) (*signingKey, error) {
	var (
		key crypto.Signer
		err error
	)
	switch alg {
	case RS256:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("devoidc: signing algorithm %q is not RS256 or ES256", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("devoidc: generate %s key: %w", alg, err)
	}
	// The key ID is the RFC 7638 thumbprint, so it names this exact key and changes with it.
	thumb, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devoidc: key thumbprint: %w", err)
	}
	return &signingKey{id: base64.RawURLEncoding.EncodeToString(thumb), alg: jose.SignatureAlgorithm(alg), key: key}, nil
}

// These implement op.SigningKey.
func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the JWKS view of a signing key. It implements op.Key.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return p.k.alg }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return p.k.key.Public() }
