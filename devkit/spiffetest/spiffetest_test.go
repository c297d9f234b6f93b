package spiffetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestSVIDVerifies: an issued SVID carries its ID, verifies against the CA's bundle and no
// other trust domain's, and expires when asked.
func TestSVIDVerifies(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("ztbank.local")
	id := spiffeid.RequireFromPath(td, "/ns/bank-b/sa/ledger")
	ca := NewCA(t, td)
	src := ca.Source(t, id)

	got, _, err := x509svid.Verify(src.SVID.Certificates, src)
	if err != nil {
		t.Fatalf("verify against the CA's bundle: %v", err)
	}
	if diff := cmp.Diff(id.String(), got.String()); diff != "" {
		t.Errorf("ID mismatch (-want +got):\n%s", diff)
	}

	other := NewCA(t, spiffeid.RequireTrustDomainFromString("evil.example"))
	if _, _, err := x509svid.Verify(other.SVID(t, spiffeid.RequireFromPath(other.TD, "/x")).Certificates, src); err == nil {
		t.Error("an SVID of another trust domain verified against this bundle")
	}
	rogue := NewCA(t, td)
	if _, _, err := x509svid.Verify(rogue.SVID(t, id).Certificates, src); err == nil {
		t.Error("an SVID from a CA outside the bundle verified")
	}

	notAfter := time.Now().Add(3 * time.Second).Truncate(time.Second)
	if diff := cmp.Diff(notAfter.UTC(), ca.SVIDUntil(t, id, notAfter).Certificates[0].NotAfter); diff != "" {
		t.Errorf("NotAfter mismatch (-want +got):\n%s", diff)
	}
	inter := ca.Intermediate(t, time.Now().Add(time.Hour))
	chained := inter.SVID(t, id)
	chained.Certificates = append(chained.Certificates, inter.Cert)
	if _, _, err := x509svid.Verify(chained.Certificates, src); err != nil {
		t.Errorf("an SVID through an intermediate did not verify: %v", err)
	}
	if ca.SVID(t, id).Certificates[0].SerialNumber.Cmp(ca.SVID(t, id).Certificates[0].SerialNumber) == 0 {
		t.Error("two SVIDs share a serial number")
	}
}

// TestWithClock: the CA and its SVIDs are valid around the test's clock, not the wall clock.
func TestWithClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	td := spiffeid.RequireTrustDomainFromString("ztbank.local")
	ca := NewCA(t, td, WithClock(func() time.Time { return t0 }))
	leaf := ca.SVID(t, spiffeid.RequireFromPath(td, "/w")).Certificates[0]
	if diff := cmp.Diff([]time.Time{t0.Add(-time.Minute), t0.Add(time.Hour)}, []time.Time{leaf.NotBefore, leaf.NotAfter}); diff != "" {
		t.Errorf("leaf validity mismatch (-want +got):\n%s", diff)
	}
	if !ca.Cert.NotBefore.Before(t0) || !ca.Cert.NotAfter.After(t0.Add(time.Hour)) {
		t.Errorf("CA valid %v to %v, want around %v", ca.Cert.NotBefore, ca.Cert.NotAfter, t0)
	}
}
