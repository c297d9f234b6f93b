package main

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/ztbank/ztbank/libs/problem"
	"github.com/ztbank/ztbank/libs/server"
)

// forwardTimeout bounds one backend call, including the backend's own calls (user to
// account, payment to ledger), each bounded more tightly.
const forwardTimeout = 15 * time.Second

// maxResponseBytes bounds what the gateway relays; API responses are small pages.
const maxResponseBytes = 1 << 20

// Headers relayed in each direction. Everything else, identity headers above all, stays
// behind: the backend learns the user only from the token the peer client forwards.
var (
	requestHeaders  = []string{"Content-Type", "Accept", "Idempotency-Key"}
	responseHeaders = []string{"Content-Type", "Cache-Control", "Idempotent-Replayed"}
)

// forward relays the request to the same path on peer p over its mTLS client, which adds
// the user's internal JWT from the request context.
func forward(p *server.Peer) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
		defer cancel()
		target := p.BaseURL + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		var body io.Reader
		if r.Method == http.MethodPost {
			body = r.Body // bounded by the router's body limit
		}
		req, err := http.NewRequestWithContext(ctx, r.Method, target, body)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		for _, k := range requestHeaders {
			if v := r.Header.Get(k); v != "" {
				req.Header.Set(k, v)
			}
		}
		resp, err := p.Client.Do(req)
		if err != nil {
			problem.Write(w, r, fmt.Errorf("%s: %w: %w", p.Name, problem.ErrUnavailable, err))
			return
		}
		defer resp.Body.Close()
		for _, k := range responseHeaders {
			if v := resp.Header.Get(k); v != "" {
				w.Header().Set(k, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, maxResponseBytes))
	}
}

// api holds the OpenAPI document of each half of the catalogue's public API, committed next
// to the routes it describes, with {tenant} where the tenant's name goes: the binary carries
// no tenant's name, and any tenant the topology gives it gets its own document.
//
//go:embed api
var api embed.FS

// openAPIDocument is the document of half ("retail" or "payments") for tenant.
func openAPIDocument(half, tenant string) ([]byte, error) {
	b, err := fs.ReadFile(api, "api/"+half+".yaml")
	if err != nil {
		return nil, fmt.Errorf("no OpenAPI document for the %s API (services/gateway/api/%s.yaml): %w", half, half, err)
	}
	return bytes.ReplaceAll(b, []byte("{tenant}"), []byte(tenant)), nil
}

func serveDocument(doc []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(doc)
	}
}
