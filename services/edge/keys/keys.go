// Package keys keeps the edge's internal-JWT signing keys in a store every replica reads, so
// that all replicas sign with keys all of them publish (ADR 0985).
//
// The store holds one document: every key with the time it was written and the time it
// starts signing. Rules, each enforced here:
//   - publish ahead: a key starts signing PublishAhead after it is written; every replica
//     re-reads the store every Refresh and refuses to serve its key set or sign once its view
//     is older than MaxStale (< PublishAhead), so by the time any replica signs with a key,
//     every replica that answers publishes it;
//   - retire late: a key stays published until Overlap (≥ token TTL) after the next key
//     started signing, so every token it signed has expired first;
//   - one history: writes are compare-and-swap on the store's version, so two replicas
//     rotating at once cannot both win; the loser re-reads and adopts the winner's key.
//
// Every replica runs the same loop; whichever finds the schedule due writes the next key.
// A restarted replica reads the document and carries on with the same keys.
package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/ztbank/ztbank/libs/usertoken"
)

// ErrConflict means the store changed since the version a Save was based on.
var ErrConflict = errors.New("keys: store changed concurrently")

// Store is where the key document lives. Load returns the document and an opaque version
// ("" when the store holds none yet); Save writes doc only if the store still holds prev.
type Store interface {
	Load(ctx context.Context) (Doc, string, error)
	Save(ctx context.Context, doc Doc, prev string) error
}

// Doc is the stored key document.
type Doc struct {
	Keys []Key `json:"keys"`
}

// Key is one signing key. Private is the PKCS#8 DER of an ECDSA P-256 key, base64.
type Key struct {
	ID       string    `json:"kid"`
	Private  string    `json:"private"`
	Written  time.Time `json:"written"`
	Activate time.Time `json:"activate"`
}

// Schedule is the timing of rotation and publication.
type Schedule struct {
	Rotation     time.Duration // how long each key signs
	PublishAhead time.Duration // between writing a key and signing with it
	Overlap      time.Duration // a key stays published this long after it stopped signing (≥ token TTL)
	Refresh      time.Duration // how often each replica re-reads the store
	MaxStale     time.Duration // a view older than this neither signs nor publishes
}

// Check validates the schedule's invariants.
func (s Schedule) Check() error {
	switch {
	case s.Refresh <= 0 || s.Rotation <= 0 || s.Overlap <= 0:
		return errors.New("keys: rotation, overlap and refresh must be positive")
	case s.MaxStale < s.Refresh:
		return fmt.Errorf("keys: max staleness %v below the refresh interval %v", s.MaxStale, s.Refresh)
	case s.PublishAhead <= s.MaxStale:
		return fmt.Errorf("keys: publish-ahead %v must exceed the max staleness %v, or a replica could sign with a key another has not published", s.PublishAhead, s.MaxStale)
	case s.Rotation <= s.PublishAhead:
		return fmt.Errorf("keys: rotation %v must exceed publish-ahead %v", s.Rotation, s.PublishAhead)
	}
	return nil
}

// Ring is one replica's view of the store; it implements usertoken.KeyRing.
type Ring struct {
	store Store
	sched Schedule
	now   func() time.Time
	log   *slog.Logger

	mu       sync.Mutex
	keys     []parsed // sorted by Activate
	loadedAt time.Time
}

type parsed struct {
	Key
	priv *ecdsa.PrivateKey
	pub  jose.JSONWebKey
}

// New returns a ring over store; call Sync once before use and Run to keep it current.
func New(store Store, sched Schedule, now func() time.Time, log *slog.Logger) (*Ring, error) {
	if err := sched.Check(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Ring{store: store, sched: sched, now: now, log: log}, nil
}

// Run re-syncs every Refresh until ctx is done; failures are logged and retried, and the
// view ages out (MaxStale) if they persist.
func (r *Ring) Run(ctx context.Context) {
	t := time.NewTicker(r.sched.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Sync(ctx); err != nil {
				r.log.WarnContext(ctx, "signing key store sync failed", "err", err)
			}
		}
	}
}

// Sync reads the store, writes the next key or drops retired ones when the schedule says
// so (compare-and-swap; on conflict it re-reads), and adopts the result as its view.
func (r *Ring) Sync(ctx context.Context) error {
	for attempt := 0; attempt < 3; attempt++ {
		doc, version, err := r.store.Load(ctx)
		if err != nil {
			return fmt.Errorf("keys: load: %w", err)
		}
		readAt := r.now()
		next, changed, err := r.plan(doc, readAt)
		if err != nil {
			return err
		}
		if changed {
			if err := r.store.Save(ctx, next, version); errors.Is(err, ErrConflict) {
				continue // another replica wrote first: adopt its document
			} else if errors.Is(err, ErrReadOnly) {
				// Keys generated ahead by the store's writer: use them as they are (retired
				// ones are left out of the JWKS all the same).
				return r.adopt(doc, readAt)
			} else if err != nil {
				return fmt.Errorf("keys: save: %w", err)
			}
			r.log.InfoContext(ctx, "signing keys updated", "keys", len(next.Keys))
		}
		return r.adopt(next, readAt)
	}
	return fmt.Errorf("keys: %w three times in a row", ErrConflict)
}

// plan applies the schedule to doc at now.
func (r *Ring) plan(doc Doc, now time.Time) (Doc, bool, error) {
	keys := slices.Clone(doc.Keys)
	slices.SortFunc(keys, func(a, b Key) int { return a.Activate.Compare(b.Activate) })
	changed := false
	// Drop keys retired for good: their successor started signing more than Overlap ago.
	for len(keys) > 1 && !now.Before(keys[1].Activate.Add(r.sched.Overlap)) {
		keys = keys[1:]
		changed = true
	}
	// Write the next key PublishAhead before the newest one's period ends (or, in an empty
	// store, PublishAhead from now: no replica signs before every replica can publish it).
	// The new key starts at now+PublishAhead, which is the newest key's period end or, when a
	// sync came late, slightly after it (the current key then signs a little longer).
	activate := now.Add(r.sched.PublishAhead)
	due := len(keys) == 0 || !keys[len(keys)-1].Activate.Add(r.sched.Rotation).After(activate)
	if due {
		k, err := newKey(now, activate)
		if err != nil {
			return Doc{}, false, err
		}
		keys = append(keys, k)
		changed = true
	}
	return Doc{Keys: keys}, changed, nil
}

func newKey(written, activate time.Time) (Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("keys: generate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("keys: encode: %w", err)
	}
	pub, err := publicJWK(priv)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: pub.KeyID, Private: base64.StdEncoding.EncodeToString(der),
		Written: written.UTC(), Activate: activate.UTC()}, nil
}

func publicJWK(priv *ecdsa.PrivateKey) (jose.JSONWebKey, error) {
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("keys: thumbprint: %w", err)
	}
	// The RFC 7638 thumbprint, as the in-memory issuer uses: derivable from the public key.
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return pub, nil
}

func (r *Ring) adopt(doc Doc, readAt time.Time) error {
	var keys []parsed
	for _, k := range doc.Keys {
		der, err := base64.StdEncoding.DecodeString(k.Private)
		if err != nil {
			return fmt.Errorf("keys: %s: %w", k.ID, err)
		}
		raw, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return fmt.Errorf("keys: %s: %w", k.ID, err)
		}
		priv, ok := raw.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() {
			return fmt.Errorf("keys: %s: not an ECDSA P-256 key", k.ID)
		}
		pub, err := publicJWK(priv)
		if err != nil {
			return err
		}
		if pub.KeyID != k.ID {
			return fmt.Errorf("keys: %s: kid does not match the key's thumbprint %s", k.ID, pub.KeyID)
		}
		keys = append(keys, parsed{Key: k, priv: priv, pub: pub})
	}
	slices.SortFunc(keys, func(a, b parsed) int { return a.Activate.Compare(b.Activate) })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys, r.loadedAt = keys, readAt
	return nil
}

// view returns the keys if the view is fresh enough to act on.
func (r *Ring) view() ([]parsed, time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.loadedAt.IsZero() || now.Sub(r.loadedAt) > r.sched.MaxStale {
		return nil, now, fmt.Errorf("key store last read %v ago (limit %v): %w", now.Sub(r.loadedAt).Round(time.Millisecond), r.sched.MaxStale, usertoken.ErrNoKeys)
	}
	return r.keys, now, nil
}

// Signing returns the newest key whose activation has come.
func (r *Ring) Signing() (string, *ecdsa.PrivateKey, error) {
	keys, now, err := r.view()
	if err != nil {
		return "", nil, err
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if !keys[i].Activate.After(now) {
			return keys[i].ID, keys[i].priv, nil
		}
	}
	return "", nil, fmt.Errorf("no key active yet: %w", usertoken.ErrNoKeys)
}

// Published returns every key not yet retired: those waiting to sign (published ahead), the
// signing one, and those whose tokens may still be live.
func (r *Ring) Published() (jose.JSONWebKeySet, error) {
	keys, now, err := r.view()
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for i, k := range keys {
		if i+1 < len(keys) && !now.Before(keys[i+1].Activate.Add(r.sched.Overlap)) {
			continue
		}
		set.Keys = append(set.Keys, k.pub)
	}
	return set, nil
}

// Ready reports whether the ring can sign now (for the readiness probe).
func (r *Ring) Ready() error {
	_, _, err := r.Signing()
	return err
}

// version is the content version of a stored document (file stores).
func version(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func encode(doc Doc) ([]byte, error) {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keys: encode: %w", err)
	}
	return append(b, '\n'), nil
}

func decode(b []byte) (Doc, error) {
	var doc Doc
	if len(b) == 0 {
		return doc, nil
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return Doc{}, fmt.Errorf("keys: decode: %w", err)
	}
	return doc, nil
}

// ErrReadOnly means the store cannot be written here (a Kubernetes Secret volume): its keys
// come from a writer elsewhere, generated ahead (Extend), and the replicas only read them.
var ErrReadOnly = errors.New("keys: store is read-only")

// Extend appends keys to doc so that its keys keep signing until at least until, each
// signing for rotation. The first new key activates no earlier than notBefore: a generator
// replacing a store that running replicas read must leave them time to pick it up.
func Extend(doc Doc, notBefore, until time.Time, rotation time.Duration) (Doc, error) {
	keys := slices.Clone(doc.Keys)
	slices.SortFunc(keys, func(a, b Key) int { return a.Activate.Compare(b.Activate) })
	next := notBefore
	if n := len(keys); n > 0 && keys[n-1].Activate.Add(rotation).After(next) {
		next = keys[n-1].Activate.Add(rotation)
	}
	for ; next.Before(until); next = next.Add(rotation) {
		k, err := newKey(time.Now(), next)
		if err != nil {
			return Doc{}, err
		}
		keys = append(keys, k)
	}
	return Doc{Keys: keys}, nil
}
