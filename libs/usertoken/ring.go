package usertoken

import (
	"crypto/ecdsa"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// KeyRing supplies an Issuer's keys from outside instead of keys generated in memory: several
// issuers (edge replicas) reading one key store then sign with keys every one of them
// publishes. The ring owns the schedule (which key signs when, which are published).
type KeyRing interface {
	// Signing returns the key to sign with now and its kid.
	Signing() (kid string, key *ecdsa.PrivateKey, err error)
	// Published returns the public keys to publish now.
	Published() (jose.JSONWebKeySet, error)
}

// ErrNoKeys means a key ring cannot currently sign or publish (no key active yet, or its
// view of the store is too old to be trusted).
var ErrNoKeys = errors.New("usertoken: no usable signing keys")

// WithKeyRing makes an Issuer sign with and publish the keys of r; its own rotation options
// are then unused.
func WithKeyRing(r KeyRing) Option { return func(o *options) { o.ring = r } }

// ringSigner returns a signer for the ring's current key, cached by kid.
func (i *Issuer) ringSigner() (jose.Signer, error) {
	kid, key, err := i.opts.ring.Signing()
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.cur != nil && i.cur.kid == kid {
		return i.cur.signer, nil
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return nil, fmt.Errorf("usertoken: signer: %w", err)
	}
	i.cur = &signingKey{kid: kid, signer: signer}
	return signer, nil
}
