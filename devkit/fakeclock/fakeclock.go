// Package fakeclock is a settable time source for tests: the code under test reads Now
// from its own goroutines while the test moves the time on.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only when the test says so.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New is a clock standing at now.
func New(now time.Time) *Clock { return &Clock{now: now} }

// Now is the clock's time; pass the method value (clk.Now) where code takes a func() time.Time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
