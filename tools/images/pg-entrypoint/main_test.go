package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadConfig(t *testing.T) {
	full := map[string]string{
		"ZTBANK_PG_SUPERUSER_PASSWORD_FILE": "/run/secrets/pw",
		"ZTBANK_PG_TLS_CERT":                "/run/secrets/crt",
		"ZTBANK_PG_TLS_KEY":                 "/run/secrets/key",
	}
	for _, tc := range []struct {
		name    string
		drop    string
		wantErr string
	}{
		{"all set", "", ""},
		{"no password file", "ZTBANK_PG_SUPERUSER_PASSWORD_FILE", "required: ZTBANK_PG_SUPERUSER_PASSWORD_FILE"},
		{"no certificate", "ZTBANK_PG_TLS_CERT", "required: ZTBANK_PG_TLS_CERT"},
		{"no key", "ZTBANK_PG_TLS_KEY", "required: ZTBANK_PG_TLS_KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == tc.drop {
					return ""
				}
				return full[k]
			}
			got, err := loadConfig(getenv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loadConfig error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := config{passwordFile: "/run/secrets/pw", certFile: "/run/secrets/crt", keyFile: "/run/secrets/key"}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(config{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// TestServerArgs: the contract's settings are on the command line, where a postgresql.conf
// edited in the volume cannot turn them off.
func TestServerArgs(t *testing.T) {
	got := serverArgs(config{certFile: "/c.pem", keyFile: "/k.pem"}, "/var/lib/postgresql/data/ztbank-server.key")
	want := []string{
		"-D", "/var/lib/postgresql/data",
		"-c", "listen_addresses=0.0.0.0",
		"-c", "port=5432",
		"-c", "ssl=on",
		"-c", "ssl_cert_file=/c.pem",
		"-c", "ssl_key_file=/var/lib/postgresql/data/ztbank-server.key",
		"-c", "ssl_min_protocol_version=TLSv1.2",
		"-c", "hba_file=/etc/ztbank/postgres/pg_hba.conf",
		"-c", "password_encryption=scram-sha-256",
		"-c", "unix_socket_directories=",
		"-c", "jit=off",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("serverArgs (-want +got):\n%s", diff)
	}
}

func TestRunRefusesWithoutSecrets(t *testing.T) {
	err := run(context.Background(), []string{"pg-entrypoint"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ZTBANK_PG_SUPERUSER_PASSWORD_FILE, ZTBANK_PG_TLS_CERT, ZTBANK_PG_TLS_KEY") {
		t.Fatalf("run without configuration: %v, want all three variables named", err)
	}
	err = run(context.Background(), []string{"pg-entrypoint", "bogus"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `unknown command "bogus"`) {
		t.Fatalf("run bogus: %v", err)
	}
}
