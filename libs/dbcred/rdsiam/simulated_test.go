package rdsiam

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztbank/ztbank/devkit/fakeclock"
)

// TestThirtySimulatedMinutesAtLoad drives one Source per database-backed service through 30
// minutes of a fake clock, one second at a time, with 16 concurrent connection attempts per
// service every second: far more new connections than a pool opens (pgxpool reopens a
// connection only when its 10-minute lifetime ends), so every rollover happens under
// contention. It checks what issue 14 asks of IAM authentication: at most
// ceil(30 min / (lifetime − skew)) = 3 token generations per service, and no login that
// could fail at a rollover — every credential handed out is signed, not yet expired, and
// keeps at least the skew margin for the login it is used for.
func TestThirtySimulatedMinutesAtLoad(t *testing.T) {
	const (
		run     = 30 * time.Minute
		step    = time.Second
		callers = 16
	)
	renewEvery := TokenLifetime - DefaultSkew
	wantMax := int32((run + renewEvery - 1) / renewEvery)
	clock := fakeclock.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	start := clock.Now()
	type svc struct {
		user  string
		creds *fakeCreds
		src   *Source
	}
	var svcs []*svc
	for _, user := range []string{"user_svc", "account_svc", "payment_svc", "ledger_svc"} {
		creds := &fakeCreds{}
		src, err := New("db.internal:5432", "eu-west-1", user, creds, WithClock(clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, &svc{user, creds, src})
	}
	failures := 0
	for elapsed := time.Duration(0); elapsed < run; elapsed += step {
		now := clock.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range svcs {
			for range callers {
				wg.Go(func() {
					cred, err := s.src.Token(t.Context())
					problem := ""
					switch {
					case err != nil:
						problem = err.Error()
					case cred.ExpiresAt.Sub(now) < DefaultSkew:
						problem = "credential leaves " + cred.ExpiresAt.Sub(now).String() + " for the login"
					case !strings.Contains(cred.Password, "X-Amz-Signature=") || !strings.Contains(cred.Password, "DBUser="+url.QueryEscape(s.user)):
						problem = "credential is not a token signed for " + s.user
					}
					if problem != "" {
						mu.Lock()
						failures++
						if failures <= 5 {
							t.Errorf("%s at +%v: %s", s.user, now.Sub(start), problem)
						}
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		clock.Add(step)
	}
	for _, s := range svcs {
		n := s.creds.calls.Load()
		t.Logf("%s: %d token generations in %v, %d connection attempts", s.user, n, run, int(run/step)*callers)
		if n > wantMax || n < wantMax-1 {
			t.Errorf("%s: %d token generations in %v, want at most %d (and not fewer than %d: a token lasts %v)",
				s.user, n, run, wantMax, wantMax-1, TokenLifetime)
		}
	}
	if failures > 0 {
		t.Errorf("%d connection attempts would have failed", failures)
	}
}
