package admindsn

import (
	"errors"
	"testing"

	"github.com/ztbank/ztbank/libs/dbcred"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, dsn string
		ok        bool
	}{
		{"verify-full", "postgres://admin@db.example/postgres?sslmode=verify-full", true},
		{"require sends the password unverified", "postgres://admin:pw@db.example/postgres?sslmode=require", false},
		{"no sslmode", "postgres://admin:pw@db.example/postgres", false},
		{"not a URL", "postgres://%zz", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(tc.dsn)
			if tc.ok {
				if err != nil || cfg == nil {
					t.Fatalf("Parse(%q) = %v, %v; want a config", tc.dsn, cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want a refusal", tc.dsn)
			}
		})
	}
	if _, err := Parse("postgres://admin@db.example/postgres?sslmode=require"); !errors.Is(err, dbcred.ErrInsecureTLS) {
		t.Errorf("sslmode=require: err = %v, want dbcred.ErrInsecureTLS", err)
	}
}
