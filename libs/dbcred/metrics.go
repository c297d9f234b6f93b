package dbcred

import (
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	refreshes *prometheus.CounterVec
	failures  *prometheus.CounterVec
}

var (
	metricsMu  sync.Mutex
	metricsReg = map[prometheus.Registerer]*metrics{}
)

// metricsFor returns the credential counters registered on r, registering them on first
// use. Several pools (one per role) share one set of vectors per registerer.
func metricsFor(r prometheus.Registerer) (*metrics, error) {
	metricsMu.Lock()
	defer metricsMu.Unlock()
	if m, ok := metricsReg[r]; ok {
		return m, nil
	}
	m := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztbank_db_credential_refreshes_total",
			Help: "New database credentials (tokens or rotated passwords) used to open connections.",
		}, []string{"role"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztbank_db_credential_failures_total",
			Help: "Failures to obtain a database credential for a new connection.",
		}, []string{"role"}),
	}
	var err error
	if m.refreshes, err = register(r, m.refreshes); err != nil {
		return nil, err
	}
	if m.failures, err = register(r, m.failures); err != nil {
		return nil, err
	}
	metricsReg[r] = m
	return m, nil
}

func register(r prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("dbcred: register metrics: %w", err)
	}
	return c, nil
}

// poolStats lists the pool gauges and counters, read from pgxpool.Stat at scrape time.
var poolStats = []struct {
	name, help string
	typ        prometheus.ValueType
	value      func(*pgxpool.Stat) int64
}{
	{"ztbank_db_pool_total_conns", "Open connections in the pool.", prometheus.GaugeValue, func(s *pgxpool.Stat) int64 { return int64(s.TotalConns()) }},
	{"ztbank_db_pool_idle_conns", "Idle connections in the pool.", prometheus.GaugeValue, func(s *pgxpool.Stat) int64 { return int64(s.IdleConns()) }},
	{"ztbank_db_pool_acquired_conns", "Connections currently in use.", prometheus.GaugeValue, func(s *pgxpool.Stat) int64 { return int64(s.AcquiredConns()) }},
	{"ztbank_db_pool_max_conns", "Maximum size of the pool.", prometheus.GaugeValue, func(s *pgxpool.Stat) int64 { return int64(s.MaxConns()) }},
	{"ztbank_db_pool_acquires_total", "Connections acquired from the pool.", prometheus.CounterValue, (*pgxpool.Stat).AcquireCount},
	{"ztbank_db_pool_empty_acquires_total", "Acquires that had to wait for a connection.", prometheus.CounterValue, (*pgxpool.Stat).EmptyAcquireCount},
	{"ztbank_db_pool_new_conns_total", "Connections opened by the pool.", prometheus.CounterValue, (*pgxpool.Stat).NewConnsCount},
	{"ztbank_db_pool_max_lifetime_destroys_total", "Connections closed for reaching their maximum lifetime.", prometheus.CounterValue, (*pgxpool.Stat).MaxLifetimeDestroyCount},
}

// poolCollector reports one pool's statistics under a constant role label.
type poolCollector struct {
	pool  *pgxpool.Pool
	descs []*prometheus.Desc
}

func registerPoolStats(r prometheus.Registerer, role string, pool *pgxpool.Pool) {
	c := &poolCollector{pool: pool}
	for _, s := range poolStats {
		c.descs = append(c.descs, prometheus.NewDesc(s.name, s.help, nil, prometheus.Labels{"role": role}))
	}
	// A second pool for the same role on the same registerer (tests, or a service that
	// opens a pool twice) keeps the first one's statistics rather than failing.
	_ = r.Register(c)
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	for i, s := range poolStats {
		ch <- prometheus.MustNewConstMetric(c.descs[i], s.typ, float64(s.value(st)))
	}
}
