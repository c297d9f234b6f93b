package keys_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ztbank/ztbank/devkit/fakeclock"
	"github.com/ztbank/ztbank/services/edge/keys"
)

var sched = keys.Schedule{Rotation: 10 * time.Minute, PublishAhead: time.Minute, Overlap: 6 * time.Minute,
	Refresh: 10 * time.Second, MaxStale: 30 * time.Second}

func newRing(t *testing.T, store keys.Store, clk *fakeclock.Clock) *keys.Ring {
	t.Helper()
	r, err := keys.New(store, sched, clk.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func kids(t *testing.T, r *keys.Ring) []string {
	t.Helper()
	set, err := r.Published()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	slices.Sort(out)
	return out
}

func signing(t *testing.T, r *keys.Ring) string {
	t.Helper()
	kid, _, err := r.Signing()
	if err != nil {
		t.Fatal(err)
	}
	return kid
}

// TestScheduleAcrossReplicas steps two replicas sharing a directory store through start-up,
// rotations, a restart and retirement, checking the rules at every refresh: whatever key
// any replica signs with, every replica publishes.
func TestScheduleAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	store := keys.Dir(t.TempDir())
	clk := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	a, b := newRing(t, store, clk), newRing(t, store, clk)
	for _, r := range []*keys.Ring{a, b} {
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// An empty store: the first key is published, but no one signs before publish-ahead.
	if _, _, err := a.Signing(); err == nil {
		t.Fatal("signing with a key written just now; want it published ahead first")
	}
	if diff := cmp.Diff(kids(t, a), kids(t, b)); diff != "" || len(kids(t, a)) != 1 {
		t.Fatalf("replicas disagree on the first key (-a +b):\n%s", diff)
	}
	first := kids(t, a)[0]
	seen := map[string]bool{}
	var signedBy []string
	for step := 0; step < int((45*time.Minute)/sched.Refresh); step++ {
		clk.Add(sched.Refresh)
		// Replica b restarts once, mid-run: a new ring on the same store.
		if step == 100 {
			b = newRing(t, store, clk)
		}
		for _, r := range []*keys.Ring{a, b} {
			if err := r.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
		pubA, pubB := kids(t, a), kids(t, b)
		for _, r := range []*keys.Ring{a, b} {
			kid, _, err := r.Signing()
			if err != nil {
				continue // before the first key's activation
			}
			if !slices.Contains(pubA, kid) || !slices.Contains(pubB, kid) {
				t.Fatalf("at %v a replica signs with %s, published %v and %v", clk.Now(), kid, pubA, pubB)
			}
			if !seen[kid] {
				seen[kid] = true
				signedBy = append(signedBy, kid)
			}
		}
	}
	if len(signedBy) < 4 || signedBy[0] != first {
		t.Fatalf("signing keys over 45m of 10m rotations: %v, want at least 4 starting with %s", signedBy, first)
	}
	// Retired keys leave the set: the first one signed for 10m, then Overlap; long gone.
	if slices.Contains(kids(t, a), first) {
		t.Errorf("the first key is still published 45m later")
	}
}

// TestPublishAheadAndRetire checks the exact times: a new key appears PublishAhead before it
// signs, and the old key leaves Overlap after it stopped.
func TestPublishAheadAndRetire(t *testing.T) {
	ctx := context.Background()
	store := keys.Dir(t.TempDir())
	clk := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	r := newRing(t, store, clk)
	sync := func() {
		t.Helper()
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	k1 := kids(t, r)[0]
	clk.Add(sched.PublishAhead)
	sync()
	if got := signing(t, r); got != k1 {
		t.Fatalf("signing %s, want %s", got, k1)
	}
	// k1 signs from 12:01 to 12:11; k2 is written at 12:10 and signs at 12:11.
	clk.Add(sched.Rotation - sched.PublishAhead - time.Second)
	sync()
	if len(kids(t, r)) != 1 {
		t.Fatalf("a second key %v written more than publish-ahead before it is due", kids(t, r))
	}
	clk.Add(time.Second)
	sync()
	if len(kids(t, r)) != 2 || signing(t, r) != k1 {
		t.Fatalf("at 12:10 want k1 signing and a second key published, got %v signing %s", kids(t, r), signing(t, r))
	}
	var k2 string
	for _, k := range kids(t, r) {
		if k != k1 {
			k2 = k
		}
	}
	clk.Add(sched.PublishAhead)
	sync()
	if got := signing(t, r); got != k2 {
		t.Fatalf("at 12:11 signing %s, want k2 %s", got, k2)
	}
	clk.Add(sched.Overlap - time.Second)
	sync()
	if !slices.Contains(kids(t, r), k1) {
		t.Fatal("k1 retired before the overlap after its last token")
	}
	clk.Add(time.Second)
	sync()
	if slices.Contains(kids(t, r), k1) {
		t.Fatal("k1 still published after the overlap")
	}
}

// TestStaleViewRefuses: a replica that could not read the store for MaxStale neither signs
// nor publishes, because it cannot know whether another replica signs with a newer key.
func TestStaleViewRefuses(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	r := newRing(t, keys.Dir(t.TempDir()), clk)
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(sched.PublishAhead)
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(sched.MaxStale)
	if _, _, err := r.Signing(); err != nil {
		t.Fatalf("view exactly MaxStale old refused: %v", err)
	}
	clk.Add(time.Millisecond)
	if _, _, err := r.Signing(); err == nil {
		t.Error("signing with a view older than MaxStale")
	}
	if _, err := r.Published(); err == nil {
		t.Error("publishing a view older than MaxStale")
	}
}

// TestConcurrentWritersAgree: replicas syncing at the same instant on an empty store write
// one history; compare-and-swap makes the losers adopt the winner's key.
func TestConcurrentWritersAgree(t *testing.T) {
	ctx := context.Background()
	store := keys.Dir(t.TempDir())
	clk := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	rings := make([]*keys.Ring, 8)
	for i := range rings {
		rings[i] = newRing(t, store, clk)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(rings))
	for i, r := range rings {
		wg.Go(func() { errs[i] = r.Sync(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("ring %d: %v", i, err)
		}
	}
	// A ring that lost adopted the document it re-read; every ring's view equals the store's.
	doc, _, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 1 {
		t.Fatalf("store holds %d keys after concurrent first syncs, want 1", len(doc.Keys))
	}
	for i, r := range rings {
		if diff := cmp.Diff([]string{doc.Keys[0].ID}, kids(t, r)); diff != "" {
			t.Errorf("ring %d publishes another key (-store +ring):\n%s", i, diff)
		}
	}
}

func TestScheduleCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*keys.Schedule)
	}{
		{"publish-ahead within staleness", func(s *keys.Schedule) { s.PublishAhead = s.MaxStale }},
		{"rotation within publish-ahead", func(s *keys.Schedule) { s.Rotation = s.PublishAhead }},
		{"staleness below refresh", func(s *keys.Schedule) { s.MaxStale = s.Refresh / 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sched
			tc.edit(&s)
			if err := s.Check(); err == nil {
				t.Error("Check() accepted it")
			}
		})
	}
	if err := sched.Check(); err != nil {
		t.Errorf("Check(%+v) = %v", sched, err)
	}
}

// readOnly is a store whose writer is elsewhere, like a Kubernetes Secret volume.
type readOnly struct{ keys.Store }

func (readOnly) Save(context.Context, keys.Doc, string) error { return keys.ErrReadOnly }

// TestReadOnlyStoreWithKeysGeneratedAhead: keys extended ahead by a generator are used as
// they are; the ring rotates through them on schedule and never tries to write.
func TestReadOnlyStoreWithKeysGeneratedAhead(t *testing.T) {
	ctx := context.Background()
	dir := keys.Dir(t.TempDir())
	clk := fakeclock.New(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	doc, err := keys.Extend(keys.Doc{}, clk.Now(), clk.Now().Add(3*sched.Rotation), sched.Rotation)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 3 {
		t.Fatalf("Extend over 3 rotations made %d keys", len(doc.Keys))
	}
	if err := dir.Save(ctx, doc, ""); err != nil {
		t.Fatal(err)
	}
	r := newRing(t, readOnly{dir}, clk)
	for i, k := range doc.Keys {
		clk.Set(k.Activate)
		if err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := signing(t, r); got != k.ID {
			t.Errorf("rotation %d: signing %s, want %s", i, got, k.ID)
		}
	}
	// Extending again keeps the existing keys and continues the schedule after the last.
	more, err := keys.Extend(doc, clk.Now(), doc.Keys[2].Activate.Add(2*sched.Rotation), sched.Rotation)
	if err != nil {
		t.Fatal(err)
	}
	if len(more.Keys) != 4 || !more.Keys[3].Activate.Equal(doc.Keys[2].Activate.Add(sched.Rotation)) {
		t.Errorf("Extend: %d keys, last activating %v", len(more.Keys), more.Keys[len(more.Keys)-1].Activate)
	}
}
