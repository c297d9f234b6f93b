package chaos

import (
	"time"

	"github.com/ztbank/ztbank/services/payment/store"
)

// pendingSettleTimeout is how long a payment may stay pending after the load stops before
// the run is a failure: the payment service's recovery takes a pending payment once its key
// has been unleased for store.RecoverAfter and runs every store.DefaultRecoverEvery, plus
// one request timeout for the ledger lookup on a busy machine.
const pendingSettleTimeout = store.DefaultLease + store.RecoverAfter + 2*store.DefaultRecoverEvery + requestTimeout

var _ = time.Second
