package main

import (
	"context"
	"net/http"
	"testing"

	"github.com/ztbank/ztbank/services/edge/exchange"
)

// BenchmarkExchange measures the exchange core without sockets: "reused" is the steady state
// (one internal token per external token), "fresh" verifies the external token and mints
// every time.
func BenchmarkExchange(b *testing.B) {
	te := newTestEdge(b)
	raw := te.provider.SignRS256(b, te.claims("alice@bank-a"))
	h := http.Header{"Authorization": {"Bearer " + raw}}
	for _, bc := range []struct {
		name  string
		cache int
	}{{"reused", 10_000}, {"fresh", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			ext := te.exchanger(b, exchange.WithCacheSize(bc.cache))
			ctx := context.Background()
			if _, err := ext.Exchange(ctx, h, "bank-a"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ext.Exchange(ctx, h, "bank-a"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
