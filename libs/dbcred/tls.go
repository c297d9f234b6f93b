package dbcred

import "crypto/tls"

type tlsOf struct{ c *tls.Config }

// verified is true for pgx's sslmode=verify-full: TLS on, standard verification (which
// checks the host name against ServerName) and no custom verifier replacing it, as
// verify-ca and require install.
func (t tlsOf) verified() bool {
	return t.c != nil && !t.c.InsecureSkipVerify && t.c.VerifyPeerCertificate == nil && t.c.ServerName != ""
}
