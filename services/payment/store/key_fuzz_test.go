package store

import (
	"bufio"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// visibleASCIIKey is the Idempotency-Key contract written independently of ValidKey.
var visibleASCIIKey = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

// FuzzIdempotencyKey feeds arbitrary Idempotency-Key values to ValidKey. Accepted keys are
// exactly the 1 to 255 visible-ASCII strings; refusals are invalid-request errors; and an
// accepted key survives HTTP/1.1 on the wire byte for byte, so no whitespace trimming,
// folding or encoding can make two different keys a client sent arrive as one stored key.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{"k-1", "", " ", "a b", "a\tb", "ключ", "a\r\nX-Spiffe-ID: spiffe://x", "\x7f",
		strings.Repeat("k", 255), strings.Repeat("k", 256), `"quoted"`, "a,b", "%20"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidKey(key)
		if want := visibleASCIIKey.MatchString(key); (err == nil) != want {
			t.Fatalf("ValidKey(%q) = %v, want accepted=%v", key, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("ValidKey(%q) = %v, want ErrInvalidRequest", key, err)
			}
			return
		}
		raw := "POST /v1/payments HTTP/1.1\r\nHost: payment\r\nIdempotency-Key: " + key + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatalf("an accepted key does not make a valid request: %q: %v", key, err)
		}
		if got := req.Header.Values("Idempotency-Key"); len(got) != 1 || got[0] != key {
			t.Fatalf("key %q arrived as %q", key, got)
		}
	})
}
