package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/libs/problem"
)

// TestPeerCall: an answer is returned whatever its status, with a JSON body sent as JSON; no
// answer is ErrUnavailable (503, retry later) unless the caller itself gave up.
func TestPeerCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusUnprocessableEntity)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+string(b))
	}))
	defer srv.Close()
	p := &Peer{Name: "ledger", BaseURL: srv.URL, Client: srv.Client()}
	resp, err := p.Call(t.Context(), http.MethodPost, "/v1/postings", []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if diff := cmp.Diff([]any{422, `POST /v1/postings application/json {"a":1}`}, []any{resp.StatusCode, string(b)}); diff != "" {
		t.Errorf("Call() answer mismatch (-want +got):\n%s", diff)
	}

	gone := &Peer{Name: "ledger", BaseURL: "http://127.0.0.1:1", Client: srv.Client()}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name            string
		ctx             context.Context
		wantUnavailable bool
	}{
		{"peer unreachable", t.Context(), true},
		{"caller gave up", cancelled, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gone.Call(tc.ctx, http.MethodGet, "/v1/accounts", nil)
			if err == nil || errors.Is(err, problem.ErrUnavailable) != tc.wantUnavailable {
				t.Errorf("Call() = %v, want an error that is ErrUnavailable: %v", err, tc.wantUnavailable)
			}
		})
	}
}
