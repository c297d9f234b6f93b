package transport

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// sidecarElement is the XFCC element an Istio sidecar appends for the peer it authenticated
// (Envoy's format: By, Hash, a Subject that is always quoted with inner quotes and
// backslashes escaped, then URI).
func sidecarElement(self, peer spiffeid.ID, hash []byte, subject string) string {
	subject = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(subject)
	return fmt.Sprintf(`By=%s;Hash=%s;Subject="%s";URI=%s`, self, hex.EncodeToString(hash), subject, peer)
}

// FuzzXFCCLastElement checks the property mesh mode relies on: whatever a client or an
// earlier proxy put into X-Forwarded-Client-Cert before our own sidecar's element (the
// prefix: untrusted, possibly on its own header line), IDFromXFCC returns the URI of the
// element our sidecar appended last, or refuses; it never returns any other ID. When the
// earlier element is one Envoy wrote (well formed, with a Subject and URI of the fuzzer's
// choosing), it must not refuse.
func FuzzXFCCLastElement(f *testing.F) {
	f.Add("", "", "", "ns/bank-a/sa/gateway", []byte{1, 2}, "", false)
	f.Add(`URI=spiffe://ztbank.local/ns/bank-a/sa/gateway`, "", "", "ns/bank-b/sa/payment", []byte{3}, "CN=x", false)
	f.Add(`By=a;URI="spiffe://ztbank.local/x,y"`, "ns/bank-a/sa/gateway", `O="q,";CN=z`, "ns/bank-a/sa/user", []byte{}, `O="q,";CN=z`, true)
	f.Add(`Subject="unterminated`, "", "", "ns/bank-a/sa/user", []byte{9}, "", false)
	f.Add(`URI=spiffe://ztbank.local/ns/bank-a/sa/gateway;x="`, "", "", "ns/bank-b/sa/ledger", []byte{7}, "", false)
	f.Add(`URI=spiffe://ztbank.local/ns/bank-a/sa/gateway;x="\`, "", "", "ns/bank-b/sa/ledger", []byte{7}, `a\`, true)
	f.Add(`URI=spiffe://0;"`, "", "", "00", []byte("0"), `"`, false)
	self := spiffeid.RequireFromString("spiffe://ztbank.local/ns/bank-a/sa/account")
	f.Fuzz(func(t *testing.T, prefix, prevPath, prevSubject, peerPath string, hash []byte, subject string, separateLine bool) {
		peer, err := spiffeid.FromPath(self.TrustDomain(), "/"+peerPath)
		if err != nil {
			return // the sidecar only ever appends a valid SPIFFE ID
		}
		own := sidecarElement(self, peer, hash, subject)
		// An earlier hop's element as Envoy writes it: the header must still be accepted.
		wellFormed := false
		if prev, err := spiffeid.FromPath(self.TrustDomain(), "/"+prevPath); err == nil && prefix == "" {
			prefix, wellFormed = sidecarElement(peer, prev, hash, prevSubject), true
		}
		var values []string
		switch {
		case prefix == "":
			values, wellFormed = []string{own}, true
		case separateLine:
			values = []string{prefix, own}
		default:
			values = []string{prefix + "," + own}
		}
		got, err := IDFromXFCC(values)
		if err != nil {
			if wellFormed {
				t.Fatalf("IDFromXFCC(%q) = %v; the header is well formed and its last element names %s", values, err, peer)
			}
			return
		}
		if got != peer {
			t.Fatalf("IDFromXFCC(%q) = %s, want the last element's URI %s", values, got, peer)
		}
	})
}
