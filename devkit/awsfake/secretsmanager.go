// Package awsfake holds local stand-ins for AWS APIs, for tests only: each speaks the subset
// of the real JSON protocol the AWS SDK for Go v2 sends, and checks every request's SigV4
// signature by recomputing it with the SDK's own signer, so the code under test is the
// production client pointed at another endpoint (BaseEndpoint), never a test-only path.
package awsfake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// SecretsManager is a Secrets Manager endpoint holding secrets in memory. It implements
// GetSecretValue, PutSecretValue (with ClientRequestToken idempotency) and DescribeSecret.
type SecretsManager struct {
	region string
	creds  aws.Credentials
	now    func() time.Time

	mu       sync.Mutex
	secrets  map[string]*secret
	rejected int
	calls    map[string]int
}

type secret struct {
	name, arn string
	values    map[string]string // version ID -> value
	current   string
	previous  string
}

// NewSecretsManager returns a fake answering for region that accepts only requests signed
// with creds.
func NewSecretsManager(region string, creds aws.Credentials) *SecretsManager {
	return &SecretsManager{region: region, creds: creds, now: time.Now,
		secrets: map[string]*secret{}, calls: map[string]int{}}
}

// CreateSecret creates an empty secret, as the infrastructure code does before the edge runs.
func (f *SecretsManager) CreateSecret(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := fmt.Sprintf("arn:aws:secretsmanager:%s:000000000000:secret:%s-AbCdEf", f.region, name)
	f.secrets[name] = &secret{name: name, arn: arn, values: map[string]string{}}
	return arn
}

// Rejected counts requests refused for their signature or credentials.
func (f *SecretsManager) Rejected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

// Calls counts accepted requests by operation.
func (f *SecretsManager) Calls(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

type apiError struct {
	status int
	typ    string
	msg    string
}

func (f *SecretsManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, apiError{400, "SerializationException", err.Error()})
		return
	}
	if aerr := f.checkSignature(r, body); aerr != nil {
		f.mu.Lock()
		f.rejected++
		f.mu.Unlock()
		writeError(w, *aerr)
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, apiError{400, "UnknownOperationException", "not a Secrets Manager request"})
		return
	}
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, apiError{400, "SerializationException", err.Error()})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var (
		out  any
		aerr *apiError
	)
	switch op {
	case "GetSecretValue":
		out, aerr = f.getSecretValue(in)
	case "PutSecretValue":
		out, aerr = f.putSecretValue(in)
	case "DescribeSecret":
		out, aerr = f.describeSecret(in)
	default:
		aerr = &apiError{400, "UnknownOperationException", op + " is not implemented by the fake"}
	}
	if aerr != nil {
		writeError(w, *aerr)
		return
	}
	f.calls[op]++
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// checkSignature recomputes the SigV4 signature over the headers the request says it signed
// and compares it with the one it carries.
func (f *SecretsManager) checkSignature(r *http.Request, body []byte) *apiError {
	auth := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return &apiError{400, "IncompleteSignatureException", "request is not SigV4 signed"}
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return &apiError{400, "IncompleteSignatureException", "malformed credential scope"}
	}
	if scope[0] != f.creds.AccessKeyID {
		return &apiError{400, "UnrecognizedClientException", "The security token included in the request is invalid."}
	}
	if scope[2] != f.region || scope[3] != "secretsmanager" {
		return &apiError{400, "InvalidSignatureException", "credential scope names another region or service"}
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return &apiError{400, "IncompleteSignatureException", "missing or malformed X-Amz-Date"}
	}
	if d := f.now().Sub(at); d > 5*time.Minute || d < -5*time.Minute {
		return &apiError{400, "InvalidSignatureException", "Signature expired"}
	}
	// Rebuild the request with exactly the signed headers; the SDK's signer then signs the
	// same canonical request the client signed.
	req, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return &apiError{400, "IncompleteSignatureException", err.Error()}
	}
	req.Host = r.Host
	req.ContentLength = r.ContentLength
	for _, h := range strings.Split(fields["SignedHeaders"], ";") {
		if h == "host" || h == "content-length" {
			continue
		}
		if vs := r.Header.Values(h); len(vs) > 0 {
			req.Header[http.CanonicalHeaderKey(h)] = vs
		}
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), f.creds, req, hex.EncodeToString(sum[:]), "secretsmanager", f.region, at); err != nil {
		return &apiError{500, "InternalFailure", err.Error()}
	}
	if req.Header.Get("Authorization") != auth {
		return &apiError{400, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided."}
	}
	return nil
}

func (f *SecretsManager) find(in map[string]any) (*secret, *apiError) {
	id, _ := in["SecretId"].(string)
	for _, s := range f.secrets {
		if s.name == id || s.arn == id {
			return s, nil
		}
	}
	return nil, &apiError{400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret."}
}

func (f *SecretsManager) getSecretValue(in map[string]any) (any, *apiError) {
	s, aerr := f.find(in)
	if aerr != nil {
		return nil, aerr
	}
	version, _ := in["VersionId"].(string)
	stage, _ := in["VersionStage"].(string)
	switch {
	case version == "" && (stage == "" || stage == "AWSCURRENT"):
		version = s.current
	case version == "" && stage == "AWSPREVIOUS":
		version = s.previous
	}
	value, ok := s.values[version]
	if version == "" || !ok {
		return nil, &apiError{400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT"}
	}
	return map[string]any{"ARN": s.arn, "Name": s.name, "VersionId": version, "SecretString": value,
		"VersionStages": s.stages(version), "CreatedDate": float64(f.now().Unix())}, nil
}

func (f *SecretsManager) putSecretValue(in map[string]any) (any, *apiError) {
	s, aerr := f.find(in)
	if aerr != nil {
		return nil, aerr
	}
	value, ok := in["SecretString"].(string)
	if !ok {
		return nil, &apiError{400, "InvalidParameterException", "SecretString is required (the fake stores strings only)"}
	}
	token, _ := in["ClientRequestToken"].(string)
	if n := len(token); n < 32 || n > 64 {
		return nil, &apiError{400, "InvalidParameterException", "ClientRequestToken must be 32 to 64 characters"}
	}
	if old, exists := s.values[token]; exists {
		// Idempotency as documented: the same token and value is a retry; another value is refused.
		if old != value {
			return nil, &apiError{400, "ResourceExistsException", "A resource with the ID you requested already exists."}
		}
	} else {
		s.values[token] = value
		s.previous, s.current = s.current, token
	}
	return map[string]any{"ARN": s.arn, "Name": s.name, "VersionId": token, "VersionStages": s.stages(token)}, nil
}

func (f *SecretsManager) describeSecret(in map[string]any) (any, *apiError) {
	s, aerr := f.find(in)
	if aerr != nil {
		return nil, aerr
	}
	stages := map[string][]string{}
	for v := range s.values {
		if st := s.stages(v); len(st) > 0 {
			stages[v] = st
		}
	}
	return map[string]any{"ARN": s.arn, "Name": s.name, "VersionIdsToStages": stages}, nil
}

func (s *secret) stages(version string) []string {
	switch version {
	case s.current:
		return []string{"AWSCURRENT"}
	case s.previous:
		return []string{"AWSPREVIOUS"}
	}
	return []string{}
}

func writeError(w http.ResponseWriter, e apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Errortype", e.typ)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.typ, "message": e.msg})
}
