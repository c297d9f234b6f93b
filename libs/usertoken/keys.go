package usertoken

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// KeySource finds the public key a token names in its kid header.
type KeySource interface {
	Key(ctx context.Context, kid string) (jose.JSONWebKey, error)
}

// maxJWKSBytes bounds a fetched key set; a handful of keys is a few kilobytes.
const maxJWKSBytes = 1 << 20

// RemoteKeys is a KeySource backed by a JWKS URL. It caches the set, refreshes it when it is
// older than the maximum age, and refetches on an unknown kid at most once per minimum
// interval: without that limit, a stream of tokens with invented kids would turn every
// request into a fetch against the issuer, and a set that flaps (two replicas publishing
// different keys behind one address) would be fetched on every alternation. The interval
// counts from the last fetch made for an unknown kid, or after which a caller's kid was still
// unknown, not from any fetch: the first fetch or a scheduled refresh that found what it was
// asked for must not hold back the first token of a key published just after it (an edge
// restarted a second after a service refreshed its set). Concurrent callers share one fetch
// in flight.
type RemoteKeys struct {
	client *http.Client
	url    string
	opts   options

	mu       sync.Mutex
	keys     map[string]jose.JSONWebKey
	fetched  time.Time     // last successful fetch
	tried    time.Time     // last fetch attempt
	missed   time.Time     // start of the last fetch for an unknown kid, or that left one unknown
	inflight chan struct{} // closed when the fetch in flight ends
	lastErr  error
}

// NewRemoteKeys returns a KeySource for the JWKS at url, fetched with client. For the edge's
// internal keys client is the mTLS client that checks it is talking to the edge.
func NewRemoteKeys(client *http.Client, url string, opts ...Option) *RemoteKeys {
	return &RemoteKeys{client: client, url: url, opts: apply(opts)}
}

// Key returns the key with the given kid, fetching the set if needed.
func (k *RemoteKeys) Key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	if kid == "" {
		return jose.JSONWebKey{}, fmt.Errorf("empty kid: %w", ErrUnknownKey)
	}
	for attempt := 0; ; attempt++ {
		k.mu.Lock()
		now := k.opts.now()
		key, known := k.keys[kid]
		fresh := !k.fetched.IsZero() && now.Sub(k.fetched) < k.opts.maxAge
		if known && fresh {
			k.mu.Unlock()
			return key, nil
		}
		if wait := k.inflight; wait != nil {
			k.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return jose.JSONWebKey{}, fmt.Errorf("wait for jwks: %w", ctx.Err())
			}
		}
		// A stale set is refreshed once; an unknown kid triggers a fetch only when the
		// rate limit allows and this caller has not already waited for one.
		mayFetch := attempt == 0 && (!fresh || k.missed.IsZero() || now.Sub(k.missed) >= k.opts.minRefetch)
		if !mayFetch {
			if !known && attempt > 0 && k.tried.After(k.missed) {
				k.missed = k.tried // a fetch this caller saw end did not bring its kid
			}
			err := k.lastErr
			k.mu.Unlock()
			if known {
				// Fetch failed but we still hold the key: keep serving rather than fail
				// every request while the issuer is briefly unreachable.
				return key, nil
			}
			if err != nil {
				return jose.JSONWebKey{}, fmt.Errorf("kid %q (last fetch: %v): %w", kid, err, ErrUnknownKey)
			}
			return jose.JSONWebKey{}, fmt.Errorf("kid %q: %w", kid, ErrUnknownKey)
		}
		done := make(chan struct{})
		k.inflight, k.tried = done, now
		if fresh {
			k.missed = now // the set was fresh: this fetch is for an unknown kid
		}
		k.mu.Unlock()

		keys, err := k.fetch(ctx)

		k.mu.Lock()
		if err == nil {
			k.keys, k.fetched, k.lastErr = keys, k.opts.now(), nil
		} else {
			k.lastErr = err
			k.opts.log.WarnContext(ctx, "jwks fetch failed", "url", k.url, "err", err)
		}
		k.inflight = nil
		close(done)
		k.mu.Unlock()
	}
}

func (k *RemoteKeys) fetch(ctx context.Context) (map[string]jose.JSONWebKey, error) {
	// Detached from the request's cancellation, because other requests wait on this fetch,
	// but bounded so a hung issuer cannot hold them.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.opts.fetchBudget)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks larger than %d bytes", maxJWKSBytes)
	}
	return ParseKeySet(body)
}

// ParseKeySet decodes a JWKS document, keeping only public signing keys with a kid. Private
// or symmetric keys in a published set are a misconfiguration and are never used: a verifier
// that accepted a symmetric key would let anyone who read the set mint tokens.
func ParseKeySet(b []byte) (map[string]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := make(map[string]jose.JSONWebKey, len(set.Keys))
	for _, key := range set.Keys {
		if key.KeyID == "" || !key.Valid() || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue
		}
		if _, symmetric := key.Key.([]byte); symmetric {
			continue
		}
		keys[key.KeyID] = key
	}
	return keys, nil
}
