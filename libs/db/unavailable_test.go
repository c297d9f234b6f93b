package db_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/problem"
)

// TestUnavailable: errors that mean the database is down, restarting or refusing the
// credential are unavailable (503 with Retry-After); a statement's own failure is not (it
// stays whatever its handler makes of it, a 500 when unexpected).
func TestUnavailable(t *testing.T) {
	type got struct {
		Unavailable bool
		Status      int
		RetryAfter  string
	}
	for _, tc := range []struct {
		name string
		err  error
		want got
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, got{true, 503, "2"}},
		{"server shutting down", &pgconn.PgError{Code: "57P01"}, got{true, 503, "2"}},
		{"server starting up", &pgconn.PgError{Code: "57P03"}, got{true, 503, "2"}},
		{"connection failure", &pgconn.PgError{Code: "08006"}, got{true, 503, "2"}},
		{"expired password", &pgconn.PgError{Code: "28P01"}, got{true, 503, "2"}},
		{"too many connections", &pgconn.PgError{Code: "53300"}, got{true, 503, "2"}},
		{"connection lost", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), got{true, 503, "2"}},
		{"unique violation", &pgconn.PgError{Code: "23505"}, got{false, 500, ""}},
		{"check violation", &pgconn.PgError{Code: "23514"}, got{false, 500, ""}},
		{"plain error", errors.New("boom"), got{false, 500, ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := got{Unavailable: db.Unavailable(tc.err)}
			// Unwrapped, as a store's plain pool query returns it: the classifier libs/db
			// registers with libs/problem decides.
			err := tc.err
			rec := httptest.NewRecorder()
			problem.Write(rec, httptest.NewRequest(http.MethodGet, "/x", nil), fmt.Errorf("store: %w", err))
			g.Status, g.RetryAfter = rec.Code, rec.Header().Get("Retry-After")
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
