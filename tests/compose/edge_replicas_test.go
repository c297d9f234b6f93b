package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ztbank/ztbank/services/edge/keys"
)

// TestEdgeReplicas runs client traffic alternated between the two edge replicas (edge and
// edge-2, one key-store volume, ADR 0985) across a key rotation and a restart of edge-2. The
// workloads verify every internal token with the JWKS of the first replica
// (edge.ztbank-system), so edge-2's tokens pass only if both sign with the shared keys. Not
// one request may fail; a replica that is down is skipped, as a load balancer does.
func TestEdgeReplicas(t *testing.T) {
	e := need(t)
	ctx := t.Context()
	second := "https://" + e.port(t, "edge", "8081")
	bases := []string{e.edge, second}
	jwks := []string{"http://" + e.port(t, "edge", "9090"), "http://" + e.port(t, "edge", "9091")}
	storeFile := filepath.Join(e.volume(t, "edge-keys"), keys.DocFile)

	load := func(t *testing.T) keys.Doc {
		t.Helper()
		b, err := os.ReadFile(storeFile)
		if err != nil {
			t.Fatalf("the key store (needs root, as the suites do): %v", err)
		}
		var doc keys.Doc
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	// The rotation to wait for: the first key that starts signing after now. If the store
	// holds none yet, it is written at most one rotation (2m in compose) from now.
	start := time.Now()
	var target time.Time
	requests, failed := 0, 0
	var failures []string
	restarted := false
	// 30 requests/s over two users and two replicas stays well inside the edge's per-user
	// rate limit even while one replica is down; this test is about keys, not limits.
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := 0; ; i++ {
		<-tick.C
		if target.IsZero() {
			for _, k := range load(t).Keys {
				if k.Activate.After(start) {
					target = k.Activate
				}
			}
		}
		if !target.IsZero() && time.Now().After(target.Add(15*time.Second)) {
			break
		}
		if time.Since(start) > 4*time.Minute {
			t.Fatalf("no key rotation within 4m (store: %+v)", load(t).Keys)
		}
		if !restarted && time.Since(start) > 10*time.Second {
			// Restart edge-2 in the background: requests keep flowing meanwhile.
			restarted = true
			go func() {
				if _, err := e.composeCmd(ctx, "restart", "-t", "10", "edge-2"); err != nil {
					t.Errorf("restart edge-2: %v", err)
				}
			}()
		}
		r := readRequests(i)
		requests++
		if msg := e.balanced(ctx, bases, i, r); msg != "" {
			failed++
			if len(failures) < 5 {
				failures = append(failures, msg)
			}
		}
	}
	// Both replicas publish the rotated-to key.
	var sets [][]string
	for _, u := range jwks {
		sets = append(sets, e.kids(t, u+"/.well-known/jwks.json"))
	}
	t.Logf("compose: %d requests alternated over edge and edge-2 across the rotation at %s and a restart of edge-2: %d failed; JWKS %v",
		requests, target.Format(time.TimeOnly), failed, sets)
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %s", failed, requests, strings.Join(failures, "; "))
	}
	var rotated string
	for _, k := range load(t).Keys {
		if k.Activate.Equal(target) {
			rotated = k.ID
		}
	}
	for i, set := range sets {
		if !slices.Contains(set, rotated) {
			t.Errorf("replica %d does not publish %s, the key signing since %s: %v", i+1, rotated, target.Format(time.TimeOnly), set)
		}
	}
}

// balanced sends r to bases[i%2], falling over to the other replica only when the chosen one
// does not answer at all (stopped or restarting). It returns a failure message or "".
func (e *stackEnv) balanced(ctx context.Context, bases []string, i int, r request) string {
	var last error
	for j := range bases {
		req, err := http.NewRequestWithContext(ctx, r.method, bases[(i+j)%len(bases)]+r.path, nil)
		if err != nil {
			return err.Error()
		}
		req.Header.Set("Authorization", "Bearer "+e.tokens[r.user])
		resp, err := e.client.Do(req)
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Sprintf("%s %s via %s: %d", r.method, r.path, bases[(i+j)%len(bases)], resp.StatusCode)
		}
		return ""
	}
	return fmt.Sprintf("%s %s: no replica answered: %v", r.method, r.path, last)
}

// port is the host address a service's container port is published on.
func (e *stackEnv) port(t *testing.T, service, port string) string {
	t.Helper()
	addr, err := e.composeCmd(t.Context(), "port", service, port)
	if err != nil || addr == "" {
		t.Fatalf("published address of %s:%s: %q, %v", service, port, addr, err)
	}
	return addr
}

// volume is the host directory of one of the project's named volumes.
func (e *stackEnv) volume(t *testing.T, name string) string {
	t.Helper()
	dir, err := run(t.Context(), "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", project+"_"+name)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// kids lists the key IDs of a JWKS.
func (e *stackEnv) kids(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	slices.Sort(out)
	return out
}
