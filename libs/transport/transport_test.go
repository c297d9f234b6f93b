package transport

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztbank/ztbank/libs/caller"
	"github.com/ztbank/ztbank/libs/problem"
)

func TestIDFromXFCC(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    string // empty: an error is expected
	}{
		{"single element", []string{`By=spiffe://td/ns/a/sa/b;Hash=abc;URI=spiffe://td/ns/bank-a/sa/gateway`},
			"spiffe://td/ns/bank-a/sa/gateway"},
		{"last element wins", []string{`URI=spiffe://td/ns/x/sa/forged,By=spiffe://td/ns/a/sa/b;URI=spiffe://td/ns/bank-a/sa/user`},
			"spiffe://td/ns/bank-a/sa/user"},
		{"split over header lines", []string{`URI=spiffe://td/ns/x/sa/forged`, `URI=spiffe://td/ns/bank-a/sa/user`},
			"spiffe://td/ns/bank-a/sa/user"},
		{"quoted value with separators", []string{`Subject="CN=a,O=b;c";URI=spiffe://td/ns/bank-a/sa/user`},
			"spiffe://td/ns/bank-a/sa/user"},
		{"case-insensitive key", []string{`uri=spiffe://td/ns/bank-a/sa/user`}, "spiffe://td/ns/bank-a/sa/user"},
		{"forged earlier element, last has no URI", []string{`URI=spiffe://td/ns/bank-a/sa/gateway,Hash=abc`}, ""},
		{"no header", nil, ""},
		{"not a SPIFFE ID", []string{`URI=https://example.com`}, ""},
		{"empty", []string{``}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := IDFromXFCC(tc.headers)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("IDFromXFCC() = %s, want an error", id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, id.String()); diff != "" {
				t.Errorf("IDFromXFCC() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzIDFromXFCC(f *testing.F) {
	f.Add(`By=spiffe://td/a;Hash=abc;URI=spiffe://td/ns/bank-a/sa/gateway`)
	f.Add(`URI=spiffe://td/x,URI="spiffe://td/y"`)
	f.Add(`Subject="a\"b,c";URI=spiffe://td/z`)
	f.Fuzz(func(t *testing.T, h string) {
		id, err := IDFromXFCC([]string{h})
		if err == nil && id.IsZero() {
			t.Errorf("IDFromXFCC(%q) returned no error and no ID", h)
		}
	})
}

// TestIdentify checks that each mode takes the peer ID from the one place it may come from,
// and that the allowlist applies in both.
func TestIdentify(t *testing.T) {
	gw := spiffeid.RequireFromString("spiffe://td/ns/bank-a/sa/gateway")
	rogue := "spiffe://td/ns/bank-b/sa/payment"
	for _, tc := range []struct {
		name       string
		mode       Mode
		xfcc       string
		wantStatus int
		wantCaller string
	}{
		{"mesh: allowed peer from our sidecar's element", Mesh, "URI=" + rogue + ",URI=" + gw.String(), http.StatusOK, gw.String()},
		{"mesh: peer not on the allowlist", Mesh, "URI=" + rogue, http.StatusForbidden, ""},
		{"mesh: no XFCC", Mesh, "", http.StatusUnauthorized, ""},
		// In direct mode XFCC is whatever the client wrote: it must not identify anyone.
		{"direct: XFCC ignored without a client certificate", Direct, "URI=" + gw.String(), http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen string
			h := Identify(tc.mode, []spiffeid.ID{gw})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = caller.From(r.Context()).Workload.String()
			}))
			req := httptest.NewRequest("GET", "/x", nil)
			if tc.xfcc != "" {
				req.Header.Set("X-Forwarded-Client-Cert", tc.xfcc)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus || seen != tc.wantCaller {
				t.Errorf("status %d caller %q, want %d %q", rec.Code, seen, tc.wantStatus, tc.wantCaller)
			}
			if tc.wantStatus != http.StatusOK {
				// Refusals carry this layer's mark, so they are not mistaken for a token
				// or policy refusal with the same status.
				var body struct{ Type string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Type != problem.TypePeer {
					t.Errorf("refusal type %q (%v), want %s", body.Type, err, problem.TypePeer)
				}
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Direct, "direct": Direct, "mesh": Mesh} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("sidecar"); err == nil {
		t.Error("ParseMode(sidecar) succeeded")
	}
}
