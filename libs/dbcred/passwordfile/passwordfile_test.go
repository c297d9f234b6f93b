package passwordfile

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok", "s3cret\n")
	got, err := New(ok).Token(t.Context())
	if err != nil || got.Password != "s3cret" || !got.ExpiresAt.IsZero() {
		t.Errorf("Token() = %+v, %v; want s3cret with unknown expiry", got, err)
	}
	// Re-read on every call: a rotation is visible to the next connection.
	write("ok", "n3w\n")
	if got, _ := New(ok).Token(t.Context()); got.Password != "n3w" {
		t.Errorf("after rewrite Token() = %q, want n3w", got.Password)
	}
	for name, path := range map[string]string{
		"missing": filepath.Join(dir, "nope"),
		"empty":   write("empty", " \n"),
		"huge":    write("huge", strings.Repeat("x", maxFileSize+1)),
	} {
		if _, err := New(path).Token(t.Context()); err == nil {
			t.Errorf("%s: Token() succeeded, want error", name)
		}
	}
}

func TestRotateRefusesLongTTL(t *testing.T) {
	for _, ttl := range []time.Duration{0, -time.Second, 16 * time.Minute} {
		if _, err := Rotate(t.Context(), nil, "r", filepath.Join(t.TempDir(), "f"), ttl); err == nil {
			t.Errorf("ttl %v accepted", ttl)
		}
	}
}

func TestScramVerifierShape(t *testing.T) {
	v, err := scramVerifier("pw")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^SCRAM-SHA-256\$4096:([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("verifier %q has the wrong shape", v)
	}
	for i, want := range []int{16, 32, 32} {
		b, err := base64.StdEncoding.DecodeString(m[i+1])
		if err != nil || len(b) != want {
			t.Errorf("part %d: %d bytes (%v), want %d", i, len(b), err, want)
		}
	}
	if v2, _ := scramVerifier("pw"); v2 == v {
		t.Error("two verifiers of one password share a salt")
	}
}
