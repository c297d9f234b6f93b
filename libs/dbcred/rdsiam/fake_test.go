package rdsiam_test

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ztbank/ztbank/devkit/awsfake"
	"github.com/ztbank/ztbank/libs/dbcred/rdsiam"
)

// TestFakeRDSJudgesTokensAsRDS: the fake behind TestRolloverThroughARealPool accepts what
// rdsiam.Source signs for the instance and user, and nothing else.
func TestFakeRDSJudgesTokensAsRDS(t *testing.T) {
	const endpoint, region = "127.0.0.1:5432", "eu-west-1"
	key := aws.Credentials{AccessKeyID: "AKIDFAKE", SecretAccessKey: "fake-secret"}
	token := func(t *testing.T, endpoint, user string, key aws.Credentials) string {
		t.Helper()
		src, err := rdsiam.New(endpoint, region, user, &countingCreds{key: key})
		if err != nil {
			t.Fatal(err)
		}
		c, err := src.Token(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return c.Password
	}
	good := token(t, endpoint, "ledger_svc", key)
	tampered := good[:len(good)-1] + map[bool]string{true: "1", false: "0"}[strings.HasSuffix(good, "0")]
	cases := []struct {
		name     string
		lifetime time.Duration
		user     string
		token    string
		refused  string // part of the refusal, "" to accept
	}{
		{"signed for this instance and user", time.Minute, "ledger_svc", good, ""},
		{"another user's login", time.Minute, "payment_svc", good, "not a connect request for this user"},
		{"signed for another instance", time.Minute, "ledger_svc", token(t, "10.0.0.1:5432", "ledger_svc", key), "token for"},
		{"signed with another secret", time.Minute, "ledger_svc", token(t, endpoint, "ledger_svc", aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: "other"}), "signature does not match"},
		{"signed by another access key", time.Minute, "ledger_svc", token(t, endpoint, "ledger_svc", aws.Credentials{AccessKeyID: "AKIDOTHER", SecretAccessKey: key.SecretAccessKey}), "another access key"},
		{"signature altered", time.Minute, "ledger_svc", tampered, "signature does not match"},
		{"past its lifetime", time.Nanosecond, "ledger_svc", good, "token expired"},
		{"not a token", time.Minute, "ledger_svc", "hunter2", "token for"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := awsfake.NewRDSIAM(region, key, tc.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			f.SetEndpoint(endpoint)
			err = f.Check(tc.user, tc.token)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tc.refused == "") != (got == "") || !strings.Contains(got, tc.refused) {
				t.Errorf("verdict %q, want a refusal containing %q (empty: accepted)", got, tc.refused)
			}
			wantLogins := map[bool]int{true: 1, false: 0}[tc.refused == ""]
			if logins, _ := f.Accepted(); logins != wantLogins {
				t.Errorf("%d logins counted, want %d", logins, wantLogins)
			}
		})
	}
}
