// Package passwordfile is the local stack's database credential: the stack rotates each
// service role's password with a VALID UNTIL deadline (Rotate) and writes it to a file only
// that service reads; the service reads the file for every new connection (Source), so it
// always uses the current password and PostgreSQL, not this code, refuses an expired one.
package passwordfile

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ztbank/ztbank/libs/dbcred"
)

// maxFileSize bounds what Token reads: a password file is one short line.
const maxFileSize = 4096

// Source reads the password from a file on every call.
type Source struct {
	path string
}

// New returns a Source for the file at path. The file need not exist yet.
func New(path string) *Source { return &Source{path: path} }

// Token reads the file. It is called for each new connection, never cached, because the
// local stack rotates the password every few minutes and a cached value would be refused
// once its VALID UNTIL passes. The expiry is unknown to the reader and left zero.
func (s *Source) Token(ctx context.Context) (dbcred.Credential, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return dbcred.Credential{}, fmt.Errorf("read password file: %w", err)
	}
	defer f.Close()
	buf := make([]byte, maxFileSize+1)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return dbcred.Credential{}, fmt.Errorf("read password file %s: %w", s.path, err)
	}
	if n > maxFileSize {
		return dbcred.Credential{}, fmt.Errorf("password file %s is larger than %d bytes", s.path, maxFileSize)
	}
	pw := strings.TrimSpace(string(buf[:n]))
	if pw == "" {
		return dbcred.Credential{}, fmt.Errorf("password file %s is empty", s.path)
	}
	return dbcred.Credential{Password: pw}, nil
}

// Admin is what Rotate needs from an administrative connection; *pgx.Conn and
// *pgxpool.Pool both fit.
type Admin interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Rotate gives role a new random password valid for ttl (measured on the server's clock)
// and writes it to path, readable only by its owner. The role's previous password stops
// working at once, so rotate well before the previous one expires (every ttl/3, say).
//
// Only a SCRAM verifier computed here reaches the server, never the password, so it cannot
// end up in the server log. The new file is written before the ALTER ROLE commits and moved
// into place right after, which keeps the window in which a reader sees a password the
// server does not yet (or no longer) accept to the length of one rename.
func Rotate(ctx context.Context, admin Admin, role, path string, ttl time.Duration) (dbcred.Credential, error) {
	if ttl <= 0 || ttl > dbcred.MaxCredentialLifetime {
		return dbcred.Credential{}, fmt.Errorf("rotate %s: ttl %v must be positive and at most %v", role, ttl, dbcred.MaxCredentialLifetime)
	}
	pw := randomPassword()
	verifier, err := scramVerifier(pw)
	if err != nil {
		return dbcred.Credential{}, fmt.Errorf("rotate %s: %w", role, err)
	}
	tx, err := admin.Begin(ctx)
	if err != nil {
		return dbcred.Credential{}, fmt.Errorf("rotate %s: %w", role, err)
	}
	defer tx.Rollback(ctx)
	var until time.Time
	if err := tx.QueryRow(ctx, `SELECT now() + make_interval(secs => $1)`, ttl.Seconds()).Scan(&until); err != nil {
		return dbcred.Credential{}, fmt.Errorf("rotate %s: %w", role, err)
	}
	// ALTER ROLE takes no bind parameters; both literals are generated here and quoted.
	stmt := fmt.Sprintf("ALTER ROLE %s WITH LOGIN PASSWORD %s VALID UNTIL %s",
		pgx.Identifier{role}.Sanitize(), quote(verifier), quote(until.UTC().Format(time.RFC3339Nano)))
	if _, err := tx.Exec(ctx, stmt); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return dbcred.Credential{}, fmt.Errorf("rotate %s: %s (SQLSTATE %s)", role, pe.Message, pe.Code)
		}
		return dbcred.Credential{}, fmt.Errorf("rotate %s: %w", role, err)
	}
	tmp, err := writeTemp(path, pw)
	if err != nil {
		return dbcred.Credential{}, fmt.Errorf("rotate %s: %w", role, err)
	}
	defer os.Remove(tmp) // no-op after the rename
	if err := tx.Commit(ctx); err != nil {
		return dbcred.Credential{}, fmt.Errorf("rotate %s: %w", role, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return dbcred.Credential{}, fmt.Errorf("rotate %s: %w", role, err)
	}
	return dbcred.Credential{Password: pw, ExpiresAt: until}, nil
}

// writeTemp writes pw to a new 0600 file beside path and syncs it.
func writeTemp(path, pw string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", err
	}
	// CreateTemp already uses 0600; the explicit Chmod documents and guarantees it.
	if err := f.Chmod(0o600); err == nil {
		if _, err = f.WriteString(pw + "\n"); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func randomPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// scramIterations matches PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier computes the stored form of a SCRAM-SHA-256 password (RFC 5802, RFC 7677) as
// PostgreSQL writes it in pg_authid: SCRAM-SHA-256$iter:salt$StoredKey:ServerKey. The
// password is ASCII, so SASLprep leaves it unchanged.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
