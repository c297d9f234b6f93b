package authz

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
)

// decisionCacheSize bounds the memo. At a few hundred bytes a key it stays under a few MB.
const decisionCacheSize = 8192

// decisionCache memoises decisions by their exact policy input. The engine's policy and
// data never change after New, so for a deterministic policy the decision is a pure
// function of the input: the same input always yields the same decision, and a hit is exact,
// never an approximation. The key is the whole input value the policy would see (caller,
// user, roles, action, route, parameters, resource), so no field can be forgotten.
//
// Evaluating the prepared policy costs tens of microseconds on small machines; a hit costs
// the key's construction. Requests repeat inputs often (the same user polling the same
// balance), which is where this pays; every request is still audited with its own
// decision ID.
type decisionCache struct {
	mu sync.RWMutex
	m  map[string]Decision
}

func newDecisionCache() *decisionCache {
	return &decisionCache{m: make(map[string]Decision, 256)}
}

func (c *decisionCache) get(key string) (Decision, bool) {
	c.mu.RLock()
	d, ok := c.m[key]
	c.mu.RUnlock()
	return d, ok
}

// put stores d. When the memo is full it starts over: eviction order does not matter for
// correctness, and a periodic reset is cheaper to reason about than an LRU under a lock.
func (c *decisionCache) put(key string, d Decision) {
	c.mu.Lock()
	if len(c.m) >= decisionCacheSize {
		clear(c.m)
	}
	c.m[key] = d
	c.mu.Unlock()
}

// deterministic reports whether no module calls a non-deterministic builtin (time, random
// numbers, HTTP, UUIDs...). Only then may decisions be memoised.
func deterministic(modules map[string]*ast.Module) (bool, string) {
	for _, m := range modules {
		found := ""
		ast.WalkTerms(m, func(t *ast.Term) bool {
			call, ok := t.Value.(ast.Call)
			if !ok || len(call) == 0 || found != "" {
				return found != ""
			}
			name := call[0].Value.String()
			if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic {
				found = name
			}
			return false
		})
		if found != "" {
			return false, found
		}
	}
	return true, ""
}
