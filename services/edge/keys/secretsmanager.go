package keys

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// SecretsManagerAPI is the part of the Secrets Manager client the store calls.
type SecretsManagerAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
}

// SecretsManager stores the document as the value of one secret (EKS: ztbank/edge/signing-keys,
// encrypted with a KMS key only the edge's role may use; the IaC creates both). The version
// is the AWSCURRENT VersionId. A write is compare-and-swap through Secrets Manager's
// idempotency: its ClientRequestToken (the new VersionId) is derived from the version it
// replaces, so two replicas writing on the same version send the same token with different
// values, and Secrets Manager refuses the second with ResourceExistsException.
type SecretsManager struct {
	API    SecretsManagerAPI
	Secret string
}

// OpenSecretsManager uses the SDK's default credential chain (EKS Pod Identity in the
// cluster) and region unless region is set. endpoint, when set, replaces the regional
// endpoint (BaseEndpoint): a VPC endpoint, or a local stand-in speaking the same signed
// protocol.
func OpenSecretsManager(ctx context.Context, secret, endpoint, region string) (*SecretsManager, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	client := secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return &SecretsManager{API: client, Secret: secret}, nil
}

// Load reads the secret's current value; a secret without a value is an empty store.
func (s *SecretsManager) Load(ctx context.Context) (Doc, string, error) {
	out, err := s.API.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.Secret)})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return Doc{}, "", nil
	}
	if err != nil {
		return Doc{}, "", fmt.Errorf("secretsmanager %s: %w", s.Secret, err)
	}
	doc, err := decode([]byte(aws.ToString(out.SecretString)))
	return doc, aws.ToString(out.VersionId), err
}

// Save puts doc as the new current value if prev is still current.
func (s *SecretsManager) Save(ctx context.Context, doc Doc, prev string) error {
	b, err := encode(doc)
	if err != nil {
		return err
	}
	_, err = s.API.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(s.Secret),
		SecretString:       aws.String(string(b)),
		ClientRequestToken: aws.String(nextVersion(s.Secret, prev)),
	})
	var exists *types.ResourceExistsException
	if errors.As(err, &exists) {
		return ErrConflict
	}
	if err != nil {
		return fmt.Errorf("secretsmanager %s: %w", s.Secret, err)
	}
	return nil
}

// nextVersion is the version ID that follows prev: a UUID-shaped digest (Secrets Manager
// wants 32-64 characters), the same for every replica writing on prev.
func nextVersion(secret, prev string) string {
	h := sha256.Sum256([]byte("ztbank-edge-signing-keys\x00" + secret + "\x00" + prev))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
