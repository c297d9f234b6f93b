package awsfake

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// RDSIAM stands in for RDS's side of IAM database authentication, in front of a local
// PostgreSQL. RDS accepts as a login's password any RDS IAM token — a SigV4-presigned
// "connect" request for the instance's endpoint, the login's user and the region — signed
// with valid credentials and younger than its lifetime; every unexpired token is valid at
// once, not only the newest. A PostgreSQL role has a single password, so the fake takes the
// password check out of PostgreSQL instead: a pg_hba.conf line (HBALine) makes PostgreSQL
// hand each login's password to the fake over LDAP (simple bind), and the fake answers as
// RDS would. The code under test is the production token source and pool, unchanged.
//
// The lifetime is a parameter so tests can scale 15 minutes down. X-Amz-Date has whole
// seconds, so a token's age is known to a second, as on RDS.
type RDSIAM struct {
	endpoint, region string
	creds            aws.Credentials
	lifetime         time.Duration
	ln               net.Listener

	mu      sync.Mutex
	tokens  map[[sha256.Size]byte]int // accepted logins per token
	refused []string
	wg      sync.WaitGroup
}

// NewRDSIAM starts a fake for an instance in region that accepts tokens signed with creds'
// access key for lifetime. The instance's endpoint is set with SetEndpoint once the
// database listens (its pg_hba.conf needs HBALine first).
func NewRDSIAM(region string, creds aws.Credentials, lifetime time.Duration) (*RDSIAM, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("awsfake: rds iam: %w", err)
	}
	f := &RDSIAM{region: region, creds: creds, lifetime: lifetime, ln: ln, tokens: map[[sha256.Size]byte]int{}}
	f.wg.Go(f.serve)
	return f, nil
}

// SetEndpoint names the instance ("host:port", as tokens name it).
func (f *RDSIAM) SetEndpoint(endpoint string) {
	f.mu.Lock()
	f.endpoint = endpoint
	f.mu.Unlock()
}

// HBALine is the pg_hba.conf line that sends user's logins (TLS, from loopback) to the fake.
// It must come before any line matching user.
func (f *RDSIAM) HBALine(user string) string {
	port := f.ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf(`hostssl all %s 127.0.0.1/32 ldap ldapserver=127.0.0.1 ldapport=%d ldapprefix="uid=" ldapsuffix=",ou=rds"`, user, port)
}

// Close stops the fake.
func (f *RDSIAM) Close() error {
	err := f.ln.Close()
	f.wg.Wait()
	return err
}

// Accepted returns the number of logins accepted and of distinct tokens they used.
func (f *RDSIAM) Accepted() (logins, tokens int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.tokens {
		logins += n
	}
	return logins, len(f.tokens)
}

// Refused returns why each refused login was refused.
func (f *RDSIAM) Refused() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refused...)
}

func (f *RDSIAM) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			f.session(c)
		})
	}
}

// LDAP (RFC 4511) as PostgreSQL's simple-bind mode speaks it: a BindRequest, then an
// UnbindRequest. Anything else ends the connection.
const (
	ldapBindRequest   = 0x60 // [APPLICATION 0], constructed
	ldapBindResponse  = 0x61 // [APPLICATION 1], constructed
	ldapUnbindRequest = 0x42 // [APPLICATION 2], primitive
	ldapSimpleAuth    = 0x80 // [0], primitive
	ldapSuccess       = 0
	ldapInvalidCreds  = 49
)

func (f *RDSIAM) session(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		tag, msg, err := readTLV(r)
		if err != nil || tag != 0x30 {
			return
		}
		m := bytes.NewReader(msg)
		tag, id, err := readTLV(m)
		if err != nil || tag != 0x02 {
			return
		}
		op, body, err := readTLV(m)
		if err != nil || op != ldapBindRequest {
			return // an unbind, or something PostgreSQL does not send
		}
		b := bytes.NewReader(body)
		_, _, err1 := readTLV(b) // version
		_, dn, err2 := readTLV(b)
		auth, password, err3 := readTLV(b)
		if err := errors.Join(err1, err2, err3); err != nil || auth != ldapSimpleAuth {
			return
		}
		code := byte(ldapSuccess)
		user, ok := strings.CutPrefix(string(dn), "uid=")
		if user, ok = strings.CutSuffix(user, ",ou=rds"); !ok {
			user = "(bind DN " + string(dn) + ")"
		}
		if err := f.Check(user, string(password)); err != nil {
			code = ldapInvalidCreds
			f.mu.Lock()
			f.refused = append(f.refused, err.Error())
			f.mu.Unlock()
		}
		resp := tlv(ldapBindResponse, append(tlv(0x0a, []byte{code}), append(tlv(0x04, nil), tlv(0x04, nil)...)...))
		if _, err := c.Write(tlv(0x30, append(tlv(0x02, id), resp...))); err != nil {
			return
		}
	}
}

// Check is RDS's verdict on a login of user with token; a nil error accepts it (and counts
// it in Accepted).
func (f *RDSIAM) Check(user, token string) error {
	u, err := url.Parse("https://" + token)
	if err != nil {
		return fmt.Errorf("%s: token is not a presigned URL: %w", user, err)
	}
	q := u.Query()
	f.mu.Lock()
	endpoint := f.endpoint
	f.mu.Unlock()
	switch {
	case u.Host != endpoint:
		return fmt.Errorf("%s: token for %q, this instance is %q", user, u.Host, endpoint)
	case q.Get("Action") != "connect" || q.Get("DBUser") != user:
		return fmt.Errorf("%s: token is not a connect request for this user", user)
	case !strings.HasPrefix(q.Get("X-Amz-Credential"), f.creds.AccessKeyID+"/"):
		return fmt.Errorf("%s: token signed by another access key", user)
	}
	signed, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("%s: X-Amz-Date: %w", user, err)
	}
	if age := time.Now().Sub(signed); age >= f.lifetime {
		return fmt.Errorf("%s: token expired: signed %v ago, valid for %v", user, age.Truncate(time.Millisecond), f.lifetime)
	}
	// Recompute the signature as RDS does: the same request, signed with the secret behind
	// the access key (and the session token the request carries) at the stated time.
	req, err := http.NewRequest(http.MethodGet, "https://"+endpoint+"/", nil)
	if err != nil {
		return err
	}
	vals := url.Values{"Action": {"connect"}, "DBUser": {user}, "X-Amz-Expires": {q.Get("X-Amz-Expires")}}
	req.URL.RawQuery = vals.Encode()
	creds := f.creds
	creds.SessionToken = q.Get("X-Amz-Security-Token")
	sum := sha256.Sum256(nil)
	want, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, fmt.Sprintf("%x", sum), "rds-db", f.region, signed)
	if err != nil {
		return err
	}
	wu, err := url.Parse(want)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(wu.Query().Get("X-Amz-Signature")), []byte(q.Get("X-Amz-Signature"))) {
		return fmt.Errorf("%s: signature does not match", user)
	}
	f.mu.Lock()
	f.tokens[sha256.Sum256([]byte(token))]++
	f.mu.Unlock()
	return nil
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

// readTLV reads one BER element: tag, definite length (short or long form; OpenLDAP's
// library writes four-byte long forms), value.
func readTLV(r byteReader) (byte, []byte, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	l, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n := int(l)
	if l&0x80 != 0 {
		k := int(l & 0x7f)
		if k == 0 || k > 4 {
			return 0, nil, fmt.Errorf("BER length of %d bytes", k)
		}
		n = 0
		for range k {
			b, err := r.ReadByte()
			if err != nil {
				return 0, nil, err
			}
			n = n<<8 | int(b)
		}
	}
	if n > 1<<16 {
		return 0, nil, fmt.Errorf("BER element of %d bytes", n)
	}
	v := make([]byte, n)
	if _, err := io.ReadFull(r, v); err != nil {
		return 0, nil, err
	}
	return tag, v, nil
}

func tlv(tag byte, v []byte) []byte {
	out := []byte{tag}
	switch n := len(v); {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, v...)
}
