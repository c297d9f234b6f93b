package rdsiam

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/fakeclock"
)

// fakeCreds stands in for the default chain (Pod Identity): a real aws.CredentialsProvider
// that hands out a new session each time and counts how often it was asked.
type fakeCreds struct {
	calls   atomic.Int32
	expires time.Time // zero: credentials that do not expire
	err     error
}

func (f *fakeCreds) Retrieve(context.Context) (aws.Credentials, error) {
	n := f.calls.Add(1)
	if f.err != nil {
		return aws.Credentials{}, f.err
	}
	return aws.Credentials{
		AccessKeyID:     "AKIDEXAMPLE",
		SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
		SessionToken:    fmt.Sprintf("session-%d", n),
		CanExpire:       !f.expires.IsZero(),
		Expires:         f.expires,
	}, nil
}

func TestTokenIsPresignedConnect(t *testing.T) {
	creds := &fakeCreds{}
	src, err := New("ledger.cluster-abc.eu-west-1.rds.amazonaws.com:5432", "eu-west-1", "ledger_svc", creds)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := src.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse("https://" + cred.Password)
	if err != nil {
		t.Fatalf("token is not a URL without scheme: %v", err)
	}
	q := u.Query()
	date := q.Get("X-Amz-Date")
	got := map[string]string{
		"host":       u.Host,
		"Action":     q.Get("Action"),
		"DBUser":     q.Get("DBUser"),
		"Expires":    q.Get("X-Amz-Expires"),
		"Algorithm":  q.Get("X-Amz-Algorithm"),
		"Credential": q.Get("X-Amz-Credential"),
		"Token":      q.Get("X-Amz-Security-Token"),
		"Headers":    q.Get("X-Amz-SignedHeaders"),
	}
	want := map[string]string{
		"host":       "ledger.cluster-abc.eu-west-1.rds.amazonaws.com:5432",
		"Action":     "connect",
		"DBUser":     "ledger_svc",
		"Expires":    "900",
		"Algorithm":  "AWS4-HMAC-SHA256",
		"Credential": "AKIDEXAMPLE/" + date[:8] + "/eu-west-1/rds-db/aws4_request",
		"Token":      "session-1",
		"Headers":    "host",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("token mismatch (-want +got):\n%s", diff)
	}
	if len(q.Get("X-Amz-Signature")) != 64 {
		t.Errorf("signature %q is not a hex SHA-256", q.Get("X-Amz-Signature"))
	}
	if strings.HasPrefix(cred.Password, "https://") {
		t.Error("token keeps the URL scheme")
	}
}

func TestTokenCachedAndRenewedBeforeExpiry(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	creds := &fakeCreds{}
	src, err := New("db.internal:5432", "eu-west-1", "payment_svc", creds, WithClock(clock.Now), WithSkew(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(15 * time.Minute); !first.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", first.ExpiresAt, want)
	}
	for _, step := range []struct {
		advance   time.Duration
		wantCalls int32
		wantSame  bool
	}{
		{0, 1, true},
		{5 * time.Minute, 1, true},
		{7*time.Minute + 59*time.Second, 1, true}, // 12:59 in: 2:01 left, above the 2m skew
		{time.Second, 2, false},                   // 13:00 in: within the skew, renewed
		{time.Minute, 2, true},                    // the renewed token is cached in turn
	} {
		clock.Add(step.advance)
		got, err := src.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := creds.calls.Load(); n != step.wantCalls {
			t.Errorf("after +%v: %d signings, want %d", step.advance, n, step.wantCalls)
		}
		if same := got == first; same != step.wantSame {
			t.Errorf("after +%v: same token = %v, want %v", step.advance, same, step.wantSame)
		}
		first = got
	}
}

func TestTokenExpiryFollowsTemporaryCredentials(t *testing.T) {
	clock := fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	creds := &fakeCreds{expires: clock.Now().Add(10 * time.Minute)}
	src, _ := New("db.internal:5432", "eu-west-1", "payment_svc", creds, WithClock(clock.Now))
	got, err := src.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(creds.expires) {
		t.Errorf("ExpiresAt = %v, want the credentials' expiry %v", got.ExpiresAt, creds.expires)
	}
}

func TestTokenErrors(t *testing.T) {
	boom := errors.New("no pod identity agent")
	src, _ := New("db.internal:5432", "eu-west-1", "payment_svc", &fakeCreds{err: boom})
	if _, err := src.Token(t.Context()); !errors.Is(err, boom) {
		t.Errorf("Token() error = %v, want it to wrap %v", err, boom)
	}
	for _, tc := range []struct{ name, endpoint, region, user string }{
		{"no port", "db.internal", "eu-west-1", "u"},
		{"no host", ":5432", "eu-west-1", "u"},
		{"no region", "db:5432", "", "u"},
		{"no user", "db:5432", "eu-west-1", ""},
	} {
		if _, err := New(tc.endpoint, tc.region, tc.user, &fakeCreds{}); err == nil {
			t.Errorf("%s: New succeeded, want error", tc.name)
		}
	}
	if _, err := New("db:5432", "eu-west-1", "u", &fakeCreds{}, WithSkew(TokenLifetime)); err == nil {
		t.Error("skew of a whole lifetime accepted")
	}
}

func TestConcurrentCallersShareOneSigning(t *testing.T) {
	creds := &fakeCreds{}
	src, _ := New("db.internal:5432", "eu-west-1", "ledger_svc", creds)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := src.Token(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := creds.calls.Load(); n != 1 {
		t.Errorf("%d signings for 16 concurrent callers, want 1", n)
	}
}
