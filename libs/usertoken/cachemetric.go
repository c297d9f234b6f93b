package usertoken

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ztbank/ztbank/libs/telemetry"
)

// VerifyMetric names the counter of Verify calls by how they were answered: from the
// verified-token cache ("cache_hit") or by checking a signature ("verified", successful or
// not). tools/pathbench reads it from every service to report the cache's hit rate on the
// request path (issue 14); CacheStats gives the same figures for one Verifier.
const VerifyMetric = "ztbank_usertoken_verify_total"

var verifyCount = telemetry.Lazy(func() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: VerifyMetric,
		Help: "Internal-JWT verifications by result: cache_hit (answered by the verified-token cache) or verified (signature checked).",
	}, []string{"result"})
})

// verifyCounters are the two series, looked up once rather than on every call.
var verifyCounters = sync.OnceValues(func() (hit, checked prometheus.Counter) {
	return verifyCount().WithLabelValues("cache_hit"), verifyCount().WithLabelValues("verified")
})

// countVerify records one Verify call.
func countVerify(hit bool) {
	h, c := verifyCounters()
	if hit {
		h.Inc()
	} else {
		c.Inc()
	}
}
