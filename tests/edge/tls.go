package edge

import (
	"crypto/tls"
	"crypto/x509"
)

func caConfig(pemCA []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
