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

	"gopkg.in/yaml.v3"

	"github.com/ztbank/ztbank/libs/jsonbody"
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
			// Read the whole body before calling the backend: a chunked body announces no
			// length, so only reading it finds one over the router's limit, and streaming
			// it would fail mid-call and be answered as an unavailable backend (503) where
			// the client sent too much (413). Banking bodies are small; the backend gets
			// them with a Content-Length.
			b, err := jsonbody.ReadAll(r.Body, server.MaxBodyBytes)
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			body = bytes.NewReader(b)
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

// openAPIDocument is the description of the halves this gateway serves, for its tenant.
// One half is its file as written. Both halves are one document: the retail file with the
// payments file's paths (operations added per method: both have a /v1/accounts) and its
// components added; a component both define is taken from the payments file, whose Problem
// is the superset (it adds a rejected payment's reason).
func openAPIDocument(halves []string, tenant string) ([]byte, error) {
	var docs []*yaml.Node
	var raw []byte
	for _, half := range halves {
		b, err := fs.ReadFile(api, "api/"+half+".yaml")
		if err != nil {
			return nil, fmt.Errorf("no OpenAPI document for the %s API (services/gateway/api/%s.yaml): %w", half, half, err)
		}
		raw = b
		var n yaml.Node
		if err := yaml.Unmarshal(b, &n); err != nil || len(n.Content) != 1 {
			return nil, fmt.Errorf("services/gateway/api/%s.yaml: not one YAML document: %v", half, err)
		}
		docs = append(docs, n.Content[0])
	}
	if len(docs) > 1 {
		base := docs[0]
		for _, d := range docs[1:] {
			mergeInto(mapValue(base, "paths"), mapValue(d, "paths"), 1)
			mergeInto(mapValue(base, "components"), mapValue(d, "components"), 1)
		}
		if info := mapValue(base, "info"); info != nil {
			if desc := mapValue(info, "description"); desc != nil {
				desc.Value = "Users, accounts, payments and the ledger of tenant {tenant}: both halves of the\n" +
					"catalogue's public API, served by one gateway.\n\n" + desc.Value
			}
		}
		var err error
		if raw, err = yaml.Marshal(base); err != nil {
			return nil, fmt.Errorf("merge OpenAPI documents: %w", err)
		}
	}
	return bytes.ReplaceAll(raw, []byte("{tenant}"), []byte(tenant)), nil
}

// mapValue is the value of key in mapping node m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// mergeInto adds src's keys to dst. Below depth levels a key both hold is merged one level
// further (a path's methods, a component section's names); at depth 0 src's value replaces
// dst's.
func mergeInto(dst, src *yaml.Node, depth int) {
	if dst == nil || src == nil {
		return
	}
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		existing := mapValue(dst, k.Value)
		switch {
		case existing == nil:
			dst.Content = append(dst.Content, k, v)
		case depth > 0 && existing.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode:
			mergeInto(existing, v, depth-1)
		default:
			*existing = *v
		}
	}
}

func serveDocument(doc []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(doc)
	}
}
