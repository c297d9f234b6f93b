package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/server"
)

// onlyReader hides the concrete reader's type, so net/http cannot learn the body's length
// and sends it chunked (Transfer-Encoding: chunked, no Content-Length).
type onlyReader struct{ io.Reader }

// TestOversizedChunkedBody sends real chunked request bodies through the gateway: one over
// the platform's body limit is answered 413 problem+json and never reaches the backend
// (before the fix the limit cut the body mid-forward and the gateway answered 503); one
// within it is relayed whole.
func TestOversizedChunkedBody(t *testing.T) {
	s := newStack(t, "bank-b")
	edge, _ := s.Topo.Workload("edge")
	type answer struct {
		Status      int
		ContentType string
		Type        string
		Chunked     bool
		Reached     int
		Relayed     int
	}
	for _, tc := range []struct {
		name string
		size int
		want answer
	}{
		{"over the limit", server.MaxBodyBytes + 1, answer{http.StatusRequestEntityTooLarge, "application/problem+json", "https://ztbank.dev/problems/too-large", true, 0, 0}},
		{"far over the limit", 4 * server.MaxBodyBytes, answer{http.StatusRequestEntityTooLarge, "application/problem+json", "https://ztbank.dev/problems/too-large", true, 0, 0}},
		{"at the limit", server.MaxBodyBytes, answer{http.StatusTeapot, "application/json", "", true, 1, server.MaxBodyBytes}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.backends["payment"].requests())
			body := `{"reference":"` + strings.Repeat("x", tc.size-len(`{"reference":""}`)) + `"}`
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.Server.URL+"/v1/payments", onlyReader{strings.NewReader(body)})
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+s.Token("bob@bank-b"))
			req.Header.Set("Idempotency-Key", "k-chunked")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-Client-Cert", "URI="+edge.ID.String())
			chunked := req.ContentLength == 0 && req.Body != nil
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var p struct {
				Type string `json:"type"`
			}
			if resp.StatusCode != http.StatusTeapot {
				_ = json.Unmarshal(raw, &p)
			}
			got := answer{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Type: p.Type, Chunked: chunked}
			reqs := s.backends["payment"].requests()[before:]
			got.Reached = len(reqs)
			if len(reqs) == 1 {
				got.Relayed = len(reqs[0].Body)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("chunked POST of %d bytes (-want +got):\n%s\n%.300s", tc.size, diff, raw)
			}
		})
	}
}
