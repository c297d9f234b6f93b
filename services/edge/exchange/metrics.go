package exchange

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	metricsOnce sync.Once
	refusals    *prometheus.CounterVec
	grants      *prometheus.CounterVec
)

// metrics registers the exchange counters on the default registry the first time they are
// needed, so tests that build many exchangers do not collide on registration.
func metrics() (*prometheus.CounterVec, *prometheus.CounterVec) {
	metricsOnce.Do(func() {
		refusals = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztbank_edge_refusals_total",
			Help: "Requests the edge refused, by reason and status.",
		}, []string{"reason", "status"})
		grants = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztbank_edge_grants_total",
			Help: "Successful exchanges, by whether the internal token was minted or reused.",
		}, []string{"tenant", "token"})
		_ = prometheus.DefaultRegisterer.Register(refusals)
		_ = prometheus.DefaultRegisterer.Register(grants)
	})
	return refusals, grants
}
