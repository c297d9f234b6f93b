package keys_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ztbank/ztbank/devkit/awsfake"
	"github.com/ztbank/ztbank/devkit/fakeclock"
	"github.com/ztbank/ztbank/services/edge/keys"
)

const region = "eu-west-1"

var edgeCreds = aws.Credentials{AccessKeyID: "AKIAEDGEEXAMPLE", SecretAccessKey: "edge-secret-key"}

// startFake runs the Secrets Manager stand-in with the secret the infrastructure creates.
func startFake(t *testing.T) (*awsfake.SecretsManager, string) {
	t.Helper()
	fake := awsfake.NewSecretsManager(region, edgeCreds)
	fake.CreateSecret("ztbank/edge/signing-keys")
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return fake, srv.URL
}

// client is the production SDK client, as OpenSecretsManager builds it, with the given
// credentials and the fake as its BaseEndpoint.
func client(t *testing.T, endpoint string, creds aws.Credentials) *secretsmanager.Client {
	t.Helper()
	t.Setenv("AWS_REGION", "us-east-1") // overridden by the region argument, as EDGE_KEY_STORE_REGION does
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	s, err := keys.OpenSecretsManager(context.Background(), "ztbank/edge/signing-keys", endpoint, region)
	if err != nil {
		t.Fatal(err)
	}
	return s.API.(*secretsmanager.Client)
}

// TestSecretsManagerStore runs the key schedule on the Secrets Manager store through the SDK
// against the signature-checking fake: two replicas, compare-and-swap, a restart.
func TestSecretsManagerStore(t *testing.T) {
	ctx := context.Background()
	fake, endpoint := startFake(t)
	store := &keys.SecretsManager{API: client(t, endpoint, edgeCreds), Secret: "ztbank/edge/signing-keys"}
	clk := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	a, b := newRing(t, store, clk), newRing(t, store, clk)
	for step := 0; step < int((25*time.Minute)/sched.Refresh); step++ {
		for _, r := range []*keys.Ring{a, b} {
			if err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range []*keys.Ring{a, b} {
			if kid, _, err := r.Signing(); err == nil {
				if pa, pb := kids(t, a), kids(t, b); !slices.Contains(pa, kid) || !slices.Contains(pb, kid) {
					t.Fatalf("signing %s, published %v and %v", kid, pa, pb)
				}
			}
		}
		clk.Add(sched.Refresh)
	}
	if fake.Calls("PutSecretValue") < 3 {
		t.Errorf("%d writes over 25m of 10m rotations, want at least 3", fake.Calls("PutSecretValue"))
	}
	// A restarted replica reads the same keys.
	c := newRing(t, store, clk)
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if ka, kc := signing(t, a), signing(t, c); ka != kc {
		t.Errorf("restarted replica signs with %s, the running one with %s", kc, ka)
	}
	if fake.Rejected() != 0 {
		t.Errorf("the fake rejected %d of the SDK's signed requests", fake.Rejected())
	}
}

// TestSecretsManagerConflict: two writes based on the same version: the second is refused.
func TestSecretsManagerConflict(t *testing.T) {
	ctx := context.Background()
	_, endpoint := startFake(t)
	store := &keys.SecretsManager{API: client(t, endpoint, edgeCreds), Secret: "ztbank/edge/signing-keys"}
	_, v0, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	one := keys.Doc{Keys: []keys.Key{{ID: "one"}}}
	if err := store.Save(ctx, one, v0); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, keys.Doc{Keys: []keys.Key{{ID: "two"}}}, v0); !errors.Is(err, keys.ErrConflict) {
		t.Fatalf("second write on the same version = %v, want ErrConflict", err)
	}
	got, _, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != 1 || got.Keys[0].ID != "one" {
		t.Errorf("store holds %+v, want the first write", got)
	}
}

// TestFakeChecksSignatures: the fake refuses what AWS refuses, so a passing store test means
// the SDK really signed: unsigned requests, another secret key, a tampered body.
func TestFakeChecksSignatures(t *testing.T) {
	ctx := context.Background()
	fake, endpoint := startFake(t)
	wrong := &keys.SecretsManager{API: client(t, endpoint, aws.Credentials{AccessKeyID: edgeCreds.AccessKeyID, SecretAccessKey: "not-the-key"}), Secret: "ztbank/edge/signing-keys"}
	if _, _, err := wrong.Load(ctx); err == nil || !strings.Contains(err.Error(), "InvalidSignatureException") {
		t.Errorf("Load with the wrong secret key = %v, want InvalidSignatureException", err)
	}
	other := &keys.SecretsManager{API: client(t, endpoint, aws.Credentials{AccessKeyID: "AKIAOTHER", SecretAccessKey: "x"}), Secret: "ztbank/edge/signing-keys"}
	if _, _, err := other.Load(ctx); err == nil || !strings.Contains(err.Error(), "UnrecognizedClientException") {
		t.Errorf("Load with an unknown access key = %v, want UnrecognizedClientException", err)
	}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(`{"SecretId":"ztbank/edge/signing-keys"}`))
	req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Amzn-Errortype") != "IncompleteSignatureException" {
		t.Errorf("unsigned request: %d %s, want 400 IncompleteSignatureException", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"))
	}
	// A correctly signed request whose body is changed in flight.
	tamper := client(t, endpoint, edgeCreds)
	_, err = tamper.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("ztbank/edge/signing-keys")},
		func(o *secretsmanager.Options) { o.HTTPClient = tamperingClient{} })
	if err == nil || !strings.Contains(err.Error(), "InvalidSignatureException") {
		t.Errorf("tampered body = %v, want InvalidSignatureException", err)
	}
	if fake.Rejected() != 4 {
		t.Errorf("fake rejected %d requests, want 4", fake.Rejected())
	}
}

// tamperingClient changes the signed body before sending it.
type tamperingClient struct{}

func (tamperingClient) Do(r *http.Request) (*http.Response, error) {
	body := strings.NewReader(`{"SecretId":"ztbank/edge/other-secret"}`)
	r2 := r.Clone(r.Context())
	r2.Body = readCloser{body}
	r2.ContentLength = int64(body.Len())
	return http.DefaultTransport.RoundTrip(r2)
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
