package transport

import (
	"crypto/x509"
	"fmt"
	"os"
)

// AddCAFile adds the PEM certificates in file to pool. A file that holds none is an error:
// a client that silently trusted nothing more would fail later, at a handshake far from the
// misconfigured path.
func AddCAFile(pool *x509.CertPool, file string) error {
	pem, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no PEM certificates", file)
	}
	return nil
}

// CAPool is a pool that trusts only the certificates in file (a stack's dev CA, say).
func CAPool(file string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if err := AddCAFile(pool, file); err != nil {
		return nil, err
	}
	return pool, nil
}
