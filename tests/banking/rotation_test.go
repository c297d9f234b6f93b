package banking

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/libs/db"
	"github.com/ztbank/ztbank/libs/dbcred/passwordfile"
	"github.com/ztbank/ztbank/tests/internal/load"
	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// dbWorkloads are the services this test drives to their databases: bank-b's ledger (GET
// balance) and bank-a's user service (GET users/me).
var dbWorkloads = []string{"bank-b/ledger", "bank-a/user"}

// envOf returns a service's environment variable as the stack set it.
func envOf(t *testing.T, svc *stack.Service, key string) string {
	t.Helper()
	for _, kv := range svc.Env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	t.Fatalf("%s has no %s", svc.Workload.Name, key)
	return ""
}

// refreshes reads ztbank_db_credential_refreshes_total (new passwords a pool has used)
// from a service's metrics port.
func refreshes(t *testing.T, svc *stack.Service) float64 {
	t.Helper()
	return teststack.Sample(t, svc, `ztbank_db_credential_refreshes_total\{[^}]*role="`+regexp.QuoteMeta(svc.Workload.DBRole)+`"[^}]*\}`)
}

// TestPasswordRotationUnderLoad rotates every service's database password with the stack's
// own RotateNow, several times, while load.Clients clients drive database-backed requests
// through the real edge (bob's balance: edge → gateway → ledger → PostgreSQL; alice's
// profile: edge → gateway → user → PostgreSQL). Zero requests may fail, the run must reach
// load.MinRate, the old password must be refused by PostgreSQL after a rotation (so the
// rotation was real), and each service must have opened connections with a rotated password
// during the run (so the rotation was exercised, not slept through on old connections).
func TestPasswordRotationUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	before := map[string]float64{}
	old := map[string]string{}
	for _, name := range dbWorkloads {
		svc := st.Services[name]
		before[name] = refreshes(t, svc)
		cred, err := passwordfile.New(envOf(t, svc, "ZTBANK_DB_PASSWORD_FILE")).Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old[name] = cred.Password
	}
	if err := st.RotateNow(ctx); err != nil {
		t.Fatal(err)
	}
	// The previous password no longer logs in: PostgreSQL itself refuses it.
	for _, name := range dbWorkloads {
		svc := st.Services[name]
		cfg, err := pgx.ParseConfig(envOf(t, svc, "ZTBANK_DB_DSN"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Password = old[name]
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			conn.Close(ctx)
			t.Fatalf("%s: the password from before RotateNow still logs in", name)
		}
		if db.Code(err) != "28P01" {
			t.Errorf("%s: old password: %v, want SQLSTATE 28P01", name, err)
		}
	}

	// One pooled connection per client, as a real client keeps them.
	lc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: client.Transport.(*http.Transport).TLSClientConfig.Clone(), MaxIdleConnsPerHost: load.Clients}}
	bob := demo.AccountID("bob@bank-b", "current").String()
	requests := []struct{ user, path string }{
		{"bob@bank-b", "/bank-b/v1/accounts/" + bob + "/balance"},
		{"alice@bank-a", "/bank-a/v1/users/me"},
	}
	stop := load.Start(func(c, i int) error {
		r := requests[(c+i)%len(requests)]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.EdgeURL+r.path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tokens[r.user])
		resp, err := lc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s as %s: %d %s", r.path, r.user, resp.StatusCode, body)
		}
		return nil
	})
	// Rotate every second for a few seconds: each rotation replaces every role's password
	// while connections are being opened with the previous one.
	const rotations, every = 5, time.Second
	tick := time.NewTicker(every)
	for n := 0; n < rotations; n++ {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-tick.C:
		}
		if err := st.RotateNow(ctx); err != nil {
			t.Errorf("rotation %d: %v", n+1, err)
		}
	}
	tick.Stop()
	stats := stop()
	stats.Check(t, fmt.Sprintf("%d password rotations under load", rotations+1))
	for _, name := range dbWorkloads {
		if after := refreshes(t, st.Services[name]); after <= before[name] {
			t.Errorf("%s used no new password during the run (credential refreshes %v → %v): its pool opened no connection after a rotation",
				name, before[name], after)
		}
	}
}
