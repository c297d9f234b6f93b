package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeOpenRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		want    OpenRequest
		wantErr bool
	}{
		{"valid", `{"name":"holiday-2027","currency":"EUR"}`, OpenRequest{"holiday-2027", "EUR"}, false},
		{"unknown field", `{"name":"x","currency":"EUR","balance":100}`, OpenRequest{}, true},
		{"upper case name", `{"name":"Holiday","currency":"EUR"}`, OpenRequest{}, true},
		{"long name", `{"name":"` + strings.Repeat("a", 33) + `","currency":"EUR"}`, OpenRequest{}, true},
		{"leading dash", `{"name":"-x","currency":"EUR"}`, OpenRequest{}, true},
		{"bad currency", `{"name":"x","currency":"EURO"}`, OpenRequest{}, true},
		{"missing currency", `{"name":"x"}`, OpenRequest{}, true},
		{"trailing", `{"name":"x","currency":"EUR"} 1`, OpenRequest{}, true},
		{"too large", `{"name":"` + strings.Repeat(" ", MaxRequestBytes) + `"}`, OpenRequest{}, true},
		{"not an object", `"x"`, OpenRequest{}, true},
		{"duplicate member", `{"name":"x","name":"y","currency":"EUR"}`, OpenRequest{}, true},
		{"member in upper case", `{"NAME":"x","currency":"EUR"}`, OpenRequest{}, true},
		{"trailing closing bracket", `{"name":"x","currency":"EUR"}]`, OpenRequest{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeOpenRequest(strings.NewReader(tc.body))
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidRequest) {
					t.Fatalf("DecodeOpenRequest() error = %v, want ErrInvalidRequest", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecodeOpenRequest() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzDecodeOpenRequest checks that an accepted body always yields a valid request the
// database CHECKs would also accept.
func FuzzDecodeOpenRequest(f *testing.F) {
	f.Add(`{"name":"current","currency":"EUR"}`)
	f.Add(`{"name":"a-b","currency":"JPY","x":1}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := DecodeOpenRequest(strings.NewReader(body))
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if len(req.Name) == 0 || len(req.Name) > 32 || len(req.Currency) != 3 {
			t.Fatalf("accepted %+v", req)
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("decoded request fails validation: %v", err)
		}
	})
}
