// Package localpg runs a throwaway or persistent PostgreSQL cluster on a loopback port for
// integration tests and the local stack. The cluster is configured the way production is:
// TLS only (a CA and server certificate generated at start), scram-sha-256 for every
// connection, no trust lines and no Unix socket, and a generated superuser password.
package localpg

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/devkit/localports"
)

// Superuser is the name of the cluster's bootstrap superuser.
const Superuser = "postgres"

// DebianPackage is the package that provides the server binaries on Debian and Ubuntu.
const DebianPackage = "postgresql-15"

// ErrNoBinaries is returned when the PostgreSQL server binaries cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found")

// Cluster is a running PostgreSQL server started (or adopted) by Start.
type Cluster struct {
	dir      string
	dataDir  string
	binDir   string
	port     int
	password string
	asUser   *user.User // nil when the current user runs the server itself
	logFile  string
}

type options struct {
	binDir    string
	throwaway bool
	settings  map[string]string
}

// Option configures Start.
type Option func(*options)

// WithBinDir sets the directory holding initdb, pg_ctl and postgres. By default Start uses
// $PG_BINDIR, then /usr/lib/postgresql/15/bin, then the directory of initdb on $PATH.
func WithBinDir(dir string) Option { return func(o *options) { o.binDir = dir } }

// Throwaway turns off durability (fsync, synchronous commit, full page writes). It suits a
// cluster that a test deletes afterwards; never use it for data worth keeping.
func Throwaway() Option { return func(o *options) { o.throwaway = true } }

// WithSetting adds a postgresql.conf setting, e.g. WithSetting("max_connections", "300").
// It applies when the cluster is created.
func WithSetting(name, value string) Option {
	return func(o *options) { o.settings[name] = value }
}

// state is what a persistent directory remembers between runs.
type state struct {
	Port int `json:"port"`
}

// Start creates a cluster in dir, or reuses the one already there, and starts it if it is not
// running. dir is created if needed. The superuser password is kept in dir, readable only by
// the current user; the server's files belong to the postgres user when Start runs as root,
// because PostgreSQL refuses to run as root.
func Start(ctx context.Context, dir string, opts ...Option) (*Cluster, error) {
	o := options{settings: map[string]string{}}
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := findBinDir(o.binDir)
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	c := &Cluster{dir: dir, dataDir: filepath.Join(dir, "data"), binDir: bin, logFile: filepath.Join(dir, "postgres.log")}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("localpg: running as root needs a postgres user to run the server (install %s): %w", DebianPackage, err)
		}
		c.asUser = u
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	if c.asUser != nil {
		// The server runs as postgres and must reach its data directory and certificates
		// through every parent (t.TempDir and /root are 0700 by default).
		if err := makeTraversable(dir); err != nil {
			return nil, err
		}
	}

	fresh := false
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx, o); err != nil {
			return nil, err
		}
		fresh = true
	} else if err != nil {
		return nil, fmt.Errorf("localpg: %w", err)
	}
	pw, err := os.ReadFile(c.passwordFile())
	if err != nil {
		return nil, fmt.Errorf("localpg: read superuser password: %w", err)
	}
	c.password = strings.TrimSpace(string(pw))
	renewed, err := ensureCerts(filepath.Join(dir, "tls"), c.asUser, time.Now())
	if err != nil {
		return nil, err
	}

	var st state
	if b, err := os.ReadFile(c.stateFile()); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	if !fresh && st.Port != 0 && c.running(ctx) {
		c.port = st.Port
		if renewed {
			if err := c.pgctl(ctx, "reload"); err != nil {
				return nil, err
			}
		}
		if err := c.waitReady(ctx); err == nil {
			return c, nil
		}
		// Running but unreachable on the remembered port: restart it below.
		if err := c.pgctl(ctx, "stop", "-m", "fast", "-w"); err != nil {
			return nil, err
		}
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := st.Port
		if attempt > 0 || port == 0 || !localports.Bindable(port) {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		c.port = port
		if lastErr = c.pgctl(ctx, "start", "-w", "-t", "60", "-l", c.logFile, "-o", "-p "+strconv.Itoa(port)); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w (server log: %s)", lastErr, c.logFile)
	}
	b, _ := json.Marshal(state{Port: c.port})
	if err := os.WriteFile(c.stateFile(), b, 0o600); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("localpg: %w", err)
	}
	if err := c.waitReady(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// Port returns the loopback TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// Host returns the address the server listens on. Certificates name it as well as localhost.
func (c *Cluster) Host() string { return "127.0.0.1" }

// Dir returns the directory the cluster lives in.
func (c *Cluster) Dir() string { return c.dir }

// CAFile returns the path of the CA certificate that signed the server certificate, for
// sslrootcert.
func (c *Cluster) CAFile() string { return filepath.Join(c.dir, "tls", "ca.crt") }

// AdminDSN returns a superuser connection URL for database db with sslmode=verify-full.
func (c *Cluster) AdminDSN(db string) string { return c.DSN(Superuser, c.password, db) }

// DSN returns a connection URL for the given user and database with sslmode=verify-full
// against CAFile. An empty password leaves it out, for callers that supply one per
// connection (see libs/dbcred).
func (c *Cluster) DSN(user, password, db string) string {
	u := url.URL{Scheme: "postgres", Host: net.JoinHostPort(c.Host(), strconv.Itoa(c.port)), Path: "/" + db}
	if password == "" {
		u.User = url.User(user)
	} else {
		u.User = url.UserPassword(user, password)
	}
	u.RawQuery = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {c.CAFile()}}.Encode()
	return u.String()
}

// Stop shuts the server down (fast mode: open transactions are rolled back). The data stays
// in the directory for a later Start.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !c.running(ctx) {
		return nil
	}
	return c.pgctl(ctx, "stop", "-m", "fast", "-w")
}

func (c *Cluster) passwordFile() string { return filepath.Join(c.dir, "superuser.password") }
func (c *Cluster) stateFile() string    { return filepath.Join(c.dir, "cluster.json") }

func (c *Cluster) initdb(ctx context.Context, o options) error {
	if err := os.RemoveAll(c.dataDir); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if err := os.Mkdir(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	if err := c.chown(c.dataDir); err != nil {
		return err
	}
	pw := randomPassword()
	if err := os.WriteFile(c.passwordFile(), []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	// initdb reads the password as the server user, so it gets its own short-lived copy.
	tmp := filepath.Join(c.dir, ".initpw")
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	defer os.Remove(tmp)
	if err := c.chown(tmp); err != nil {
		return err
	}
	if err := c.run(ctx, filepath.Join(c.binDir, "initdb"),
		"-D", c.dataDir, "-U", Superuser, "--pwfile", tmp,
		"--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
		"-E", "UTF8", "--locale=C", "--no-instructions"); err != nil {
		return err
	}
	hba := "# Written by localpg: TLS with scram-sha-256 from loopback only; no Unix socket, no trust.\n" +
		"hostssl all all 127.0.0.1/32 scram-sha-256\n"
	if err := c.writeOwned(filepath.Join(c.dataDir, "pg_hba.conf"), hba); err != nil {
		return err
	}
	tlsDir := filepath.Join(c.dir, "tls")
	settings := map[string]string{
		"listen_addresses":         "'127.0.0.1'",
		"unix_socket_directories":  "''",
		"ssl":                      "on",
		"ssl_cert_file":            quote(filepath.Join(tlsDir, "server.crt")),
		"ssl_key_file":             quote(filepath.Join(tlsDir, "server.key")),
		"ssl_min_protocol_version": "'TLSv1.2'",
		"password_encryption":      "'scram-sha-256'",
		"max_connections":          "200",
		"log_connections":          "on",
		"log_min_messages":         "warning",
		"timezone":                 "'UTC'",
	}
	if o.throwaway {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range o.settings {
		settings[k] = v
	}
	var conf strings.Builder
	conf.WriteString("\n# Added by localpg.\n")
	for _, k := range sortedKeys(settings) {
		fmt.Fprintf(&conf, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	_, err = f.WriteString(conf.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("localpg: write postgresql.conf: %w", err)
	}
	// The server appends to its log as postgres; pg_ctl cannot create it in our directory.
	if err := c.writeOwned(c.logFile, ""); err != nil {
		return err
	}
	return nil
}

func (c *Cluster) running(ctx context.Context) bool {
	if _, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); err != nil {
		return false
	}
	return c.pgctl(ctx, "status") == nil
}

// waitReady connects as the superuser over TLS until it succeeds, proving that the server
// accepts exactly the kind of connection callers will make.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	for {
		var conn *pgx.Conn
		conn, err = pgx.Connect(ctx, c.AdminDSN("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("localpg: server on port %d not ready: %w", c.port, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) pgctl(ctx context.Context, args ...string) error {
	return c.run(ctx, filepath.Join(c.binDir, "pg_ctl"), append([]string{"-D", c.dataDir}, args...)...)
}

// run runs a server binary, as the postgres user when we are root.
func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	var cmd *exec.Cmd
	if c.asUser != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.asUser.Username, "--", name}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, name, args...)
	}
	cmd.Dir = "/"
	// pg_ctl start leaves the server running; a new session keeps it out of our process
	// group so a Ctrl-C aimed at the caller reaches it only through Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 && len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return fmt.Errorf("localpg: %s %s: %w: %s", filepath.Base(name), firstArg(args), err, msg)
	}
	return nil
}

func firstArg(args []string) string {
	for i, a := range args {
		if a == "-D" {
			continue
		}
		if i > 0 && args[i-1] == "-D" {
			continue
		}
		return a
	}
	return ""
}

func (c *Cluster) chown(path string) error { return chownTo(path, c.asUser) }

func (c *Cluster) writeOwned(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	return c.chown(path)
}

func chownTo(path string, u *user.User) error {
	if u == nil {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("localpg: %w", err)
	}
	return nil
}

// makeTraversable adds search (x) permission for others to dir and each of its parents that
// lacks it. Read permission is not granted, so directory listings stay private.
func makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("localpg: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("localpg: make %s traversable for the postgres user: %w", d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func findBinDir(dir string) (string, error) {
	candidates := []string{dir}
	if dir == "" {
		candidates = []string{os.Getenv("PG_BINDIR"), "/usr/lib/postgresql/15/bin"}
		if p, err := exec.LookPath("initdb"); err == nil {
			candidates = append(candidates, filepath.Dir(p))
		}
	}
	var tried []string
	for _, d := range candidates {
		if d == "" {
			continue
		}
		tried = append(tried, d)
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("localpg: %w (looked in %s and $PATH); install the Debian package %s or set PG_BINDIR",
		ErrNoBinaries, strings.Join(tried, ", "), DebianPackage)
}

// freePort reserves a port (localports.Reserve) so that packages starting clusters in
// parallel never draw the same one; the start loop above still retries on a failed start.
func freePort() (int, error) {
	ports, err := localports.Reserve(1)
	if err != nil {
		return 0, fmt.Errorf("localpg: find a free port: %w", err)
	}
	return ports[0], nil
}

func randomPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
