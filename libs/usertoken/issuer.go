package usertoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Issuer mints internal tokens with ES256 keys that exist only in memory. It rotates its key
// every rotation period, applied lazily on the next use so an injected clock drives it, and
// keeps publishing the previous key for the overlap so tokens signed just before a rotation
// still verify until they expire.
type Issuer struct {
	id   spiffeid.ID
	opts options

	mu   sync.Mutex
	cur  *signingKey
	prev *signingKey // nil once its overlap has passed
	jwks []byte      // cached JSON of the published keys; rebuilt on rotation
}

type signingKey struct {
	kid     string
	signer  jose.Signer
	public  jose.JSONWebKey
	created time.Time
	retired time.Time // when it stopped signing; zero while current
}

// NewIssuer returns an Issuer whose tokens carry iss = id (the edge's workload ID).
func NewIssuer(id spiffeid.ID, opts ...Option) (*Issuer, error) {
	if id.IsZero() {
		return nil, errors.New("usertoken: issuer needs a SPIFFE ID")
	}
	o := apply(opts)
	switch {
	case o.ttl <= 0 || o.ttl > MaxTTL:
		return nil, fmt.Errorf("usertoken: ttl %v outside (0, %v]", o.ttl, MaxTTL)
	case o.period < o.ttl:
		return nil, fmt.Errorf("usertoken: rotation period %v shorter than ttl %v", o.period, o.ttl)
	case o.overlap < o.ttl:
		return nil, fmt.Errorf("usertoken: overlap %v shorter than ttl %v would refuse live tokens", o.overlap, o.ttl)
	}
	i := &Issuer{id: id, opts: o}
	if o.ring != nil {
		return i, nil // keys, rotation and publication are the ring's
	}
	k, err := newSigningKey(o.now())
	if err != nil {
		return nil, err
	}
	i.cur = k
	if err := i.publishLocked(); err != nil {
		return nil, err
	}
	return i, nil
}

func newSigningKey(now time.Time) (*signingKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("usertoken: generate key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("usertoken: key thumbprint: %w", err)
	}
	// The RFC 7638 thumbprint as kid: unique per key and derivable by anyone holding the JWK.
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType(TokenType),
	)
	if err != nil {
		return nil, fmt.Errorf("usertoken: signer: %w", err)
	}
	return &signingKey{kid: pub.KeyID, signer: signer, public: pub, created: now}, nil
}

// rotateLocked applies the schedule at now: a new current key once the period has passed,
// and the previous key dropped once its overlap has passed.
func (i *Issuer) rotateLocked(now time.Time) error {
	changed := false
	if elapsed := now.Sub(i.cur.created); elapsed >= i.opts.period {
		// Rotation times follow the schedule, not the moment someone noticed: the old key
		// retired when its period ended, and the new one counts from the last boundary.
		n := elapsed / i.opts.period
		k, err := newSigningKey(i.cur.created.Add(n * i.opts.period))
		if err != nil {
			return err
		}
		i.prev, i.cur = i.cur, k
		i.prev.retired = i.prev.created.Add(i.opts.period)
		changed = true
	}
	if i.prev != nil && !now.Before(i.prev.retired.Add(i.opts.overlap)) {
		i.prev = nil
		changed = true
	}
	if changed {
		return i.publishLocked()
	}
	return nil
}

func (i *Issuer) publishLocked() error {
	b, err := json.Marshal(i.keySetLocked())
	if err != nil {
		return fmt.Errorf("usertoken: marshal jwks: %w", err)
	}
	i.jwks = b
	return nil
}

func (i *Issuer) keySetLocked() jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{i.cur.public}}
	if i.prev != nil {
		set.Keys = append(set.Keys, i.prev.public)
	}
	return set
}

// ID returns the issuer's SPIFFE ID, the iss of every token it mints.
func (i *Issuer) ID() spiffeid.ID { return i.id }

// Issue mints a token for c. It expires after the TTL or at c.NotAfter, whichever is first.
func (i *Issuer) Issue(ctx context.Context, c Claims) (Token, error) {
	if err := CheckUser(c.User, c.Tenant); err != nil {
		return Token{}, fmt.Errorf("usertoken: mint: %w", err)
	}
	now := i.opts.now()
	exp := now.Add(i.opts.ttl)
	if !c.NotAfter.IsZero() && c.NotAfter.Before(exp) {
		exp = c.NotAfter
	}
	if !exp.After(now) {
		return Token{}, fmt.Errorf("usertoken: mint: %w", ErrExpired)
	}
	jti, err := newTokenID()
	if err != nil {
		return Token{}, err
	}
	var signer jose.Signer
	if i.opts.ring != nil {
		if signer, err = i.ringSigner(); err != nil {
			return Token{}, err
		}
	} else {
		i.mu.Lock()
		if err := i.rotateLocked(now); err != nil {
			i.mu.Unlock()
			return Token{}, err
		}
		signer = i.cur.signer
		i.mu.Unlock()
	}

	wc := wireClaims{
		Claims: jwt.Claims{
			Issuer:   i.id.String(),
			Subject:  c.User.String(),
			Audience: jwt.Audience{c.Tenant},
			Expiry:   jwt.NewNumericDate(exp),
			// Seconds resolution: a token minted in the same second as its verification
			// must not look issued in the future.
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		Tenant: c.Tenant,
		Roles:  c.Roles,
	}
	raw, err := jwt.Signed(signer).Claims(wc).Serialize()
	if err != nil {
		return Token{}, fmt.Errorf("usertoken: sign: %w", err)
	}
	// NumericDate truncates to whole seconds; report the expiry the token really carries.
	return Token{Raw: raw, ID: jti, Expiry: wc.Expiry.Time()}, nil
}

// Mint is Issue returning only the serialized token.
func (i *Issuer) Mint(ctx context.Context, c Claims) (string, error) {
	t, err := i.Issue(ctx, c)
	return t.Raw, err
}

func newTokenID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("usertoken: token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// JWKS returns the published public keys: the current one and, during its overlap, the
// previous one.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	if i.opts.ring != nil {
		set, _ := i.opts.ring.Published() // an empty set when the ring cannot vouch for its view
		return set
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	_ = i.rotateLocked(i.opts.now()) // on failure keep publishing the keys we have
	return i.keySetLocked()
}

// Key implements KeySource, so the edge can verify its own tokens without a network hop.
func (i *Issuer) Key(_ context.Context, kid string) (jose.JSONWebKey, error) {
	for _, k := range i.JWKS().Keys {
		if k.KeyID == kid {
			return k, nil
		}
	}
	return jose.JSONWebKey{}, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
}

// JWKSHandler serves the published keys as /.well-known/jwks.json. Responses may be cached
// briefly; verifiers refetch on an unknown kid, so a new key is picked up at once anyway.
func (i *Issuer) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var b []byte
		if i.opts.ring != nil {
			// A ring that cannot vouch for its view answers 503 rather than a key set that may
			// lack a key another replica signs with: the verifier retries elsewhere.
			set, err := i.opts.ring.Published()
			if err == nil {
				b, err = json.Marshal(set)
			}
			if err != nil {
				http.Error(w, "signing keys unavailable", http.StatusServiceUnavailable)
				return
			}
		} else {
			i.mu.Lock()
			_ = i.rotateLocked(i.opts.now())
			b = i.jwks
			i.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=30")
		_, _ = w.Write(b)
	})
}
