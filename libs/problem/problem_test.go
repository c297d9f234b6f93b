package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFrom pins the problem type each error gets: a layer's refusal mark wins over its
// category's type, the category still chooses the status, and unknown errors leak nothing.
func TestFrom(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want Details
	}{
		{"policy refusal", fmt.Errorf("decide: %w", Refuse(TypePolicy, ErrForbidden, "the request was not authorised", map[string]any{"decision_id": "d-1"})),
			Details{Type: TypePolicy, Title: "Forbidden", Status: 403, Detail: "the request was not authorised", Extra: map[string]any{"decision_id": "d-1"}}},
		{"internal token refusal", Refuse(TypeInternalToken, ErrUnauthenticated, "token expired", nil),
			Details{Type: TypeInternalToken, Title: "Unauthorized", Status: 401, Detail: "token expired"}},
		{"edge refusal", Refuse(TypeEdge, ErrForbidden, "wrong tenant", nil),
			Details{Type: TypeEdge, Title: "Forbidden", Status: 403, Detail: "wrong tenant"}},
		{"peer refusal", Refuse(TypePeer, ErrForbidden, "workload not allowed", nil),
			Details{Type: TypePeer, Title: "Forbidden", Status: 403, Detail: "workload not allowed"}},
		{"no route", Refuse(TypeNoRoute, ErrNotFound, "no such route", nil),
			Details{Type: TypeNoRoute, Title: "Not Found", Status: 404, Detail: "no such route"}},
		{"data not found is the category's type", Errorf(ErrNotFound, "no such account"),
			Details{Type: TypeNotFound, Title: "Not Found", Status: 404, Detail: "no such account"}},
		{"business rule is the category's type", Errorf(ErrUnprocessable, "accounts are opened for customers only"),
			Details{Type: TypeBusinessRule, Title: "Unprocessable Entity", Status: 422, Detail: "accounts are opened for customers only"}},
		{"bare category", fmt.Errorf("x: %w", ErrConflict), Details{Type: TypeBase + "conflict", Title: "Conflict", Status: 409}},
		{"contention is unavailable with its own type", fmt.Errorf("post: %w", ErrContended),
			Details{Type: TypeContention, Title: "Service Unavailable", Status: 503}},
		{"outage", fmt.Errorf("dial: %w", ErrUnavailable), Details{Type: TypeBase + "unavailable", Title: "Service Unavailable", Status: 503}},
		{"unknown error leaks nothing", errors.New("pq: password authentication failed"),
			Details{Type: TypeBase + "internal", Title: "Internal Server Error", Status: 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, From(tc.err)); diff != "" {
				t.Errorf("From() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRefusalMarksAreDistinct: the suite tells layers apart by type alone, so no two marks
// may share a URI.
func TestRefusalMarksAreDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, typ := range []string{TypeEdge, TypePeer, TypeInternalToken, TypePolicy, TypeBusinessRule, TypeNotFound, TypeNoRoute, TypeContention, TypeIdentityExpired} {
		if seen[typ] {
			t.Errorf("refusal mark %s is used twice", typ)
		}
		seen[typ] = true
	}
}

func TestWriteIsProblemJSON(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/v1/accounts/42", nil)
	Write(w, r, Refuse(TypePolicy, ErrForbidden, "the request was not authorised", map[string]any{"decision_id": "d-2"}))
	if got := w.Header().Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", got)
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": TypePolicy, "title": "Forbidden", "status": float64(403),
		"detail": "the request was not authorised", "instance": "/v1/accounts/42", "decision_id": "d-2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
	if w.Code != http.StatusForbidden {
		t.Errorf("status %d, want 403", w.Code)
	}
}

// TestHandle: a handler's returned error becomes its problem response; a handler that
// answered itself and returned nil is left alone.
func TestHandle(t *testing.T) {
	for _, tc := range []struct {
		name       string
		h          func(http.ResponseWriter, *http.Request) error
		wantStatus int
		wantType   string
	}{
		{"answered", func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(http.StatusCreated); return nil }, 201, ""},
		{"wrapped category", func(http.ResponseWriter, *http.Request) error {
			return fmt.Errorf("load account: %w", Errorf(ErrNotFound, "no such account"))
		}, 404, TypeNotFound},
		{"unknown error", func(http.ResponseWriter, *http.Request) error { return errors.New("boom") }, 500, TypeBase + "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			Handle(tc.h)(w, httptest.NewRequest(http.MethodGet, "/x", nil))
			var body struct{ Type string }
			_ = json.Unmarshal(w.Body.Bytes(), &body)
			if diff := cmp.Diff([]any{tc.wantStatus, tc.wantType}, []any{w.Code, body.Type}); diff != "" {
				t.Errorf("status and type mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
