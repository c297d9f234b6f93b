package authz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// The residual policy (ADR 0980).
//
// Everything the policy reads from data — the permission table, the topology, the service's
// own name, tenant and identity — is fixed when New runs. New therefore asks OPA to
// partially evaluate the decision against that data with the whole input unknown: what is
// left (the residual) compares input fields with constants, nothing else. OPA does not
// partially evaluate ordered rules, so each condition of the `decision` chain is partially
// evaluated on its own and the chain is kept, in order, over the residual conditions.
//
// Evaluating that residual with OPA's general evaluator costs about as much as the full
// policy (its per-expression overhead dominates, not data lookups). The residual uses a
// small fragment of Rego, so New compiles it into the plain Go structure below, which reads
// the Input struct directly instead of building an input document. Anything outside the
// fragment makes compileResidual fail, and the engine then evaluates the full policy with
// OPA as before: the fast path is an optimisation, never a different policy. New checks the
// two agree on every self-test sample, and the unit tests check them over generated inputs.

// errUnsupported marks a residual outside the compiled fragment.
var errUnsupported = errors.New("outside the compiled residual fragment")

// residual is the compiled decision chain: the first step whose condition holds decides;
// if none holds, the default does.
type residual struct {
	steps []residualStep
	def   Decision
}

type residualStep struct {
	cond     *rule
	decision Decision
}

// rule holds when any of its bodies does; a body holds when all its expressions do.
type rule struct{ bodies [][]expr }

type opKind uint8

const (
	opUnify opKind = iota // a = b (also a == b: the residual's operands are ground or local)
	opNeq
	opStartsWith
	opMember // internal.member_2(x, collection)
	opCount  // count(x, n): count(x) == n
	opTruthy // a bare reference: defined and not false
	opRule   // a support rule of the residual
)

type expr struct {
	op      opKind
	negated bool
	args    [2]term
	rule    *rule
}

type termKind uint8

const (
	termConst termKind = iota
	termInput
	termVar
)

// term is a constant, a local variable, or an input path optionally ending in a variable
// index (input.user.roles[i]).
type term struct {
	kind  termKind
	value val // termConst
	path  []string
	index string // termInput: the variable indexing the array at path, or ""
	name  string // termVar
}

// compileResidual partially evaluates src's decision against data and compiles the result.
func compileResidual(ctx context.Context, src *policySource, data map[string]any) (*residual, error) {
	var chain, def *ast.Rule
	var modules []*ast.Module
	for _, name := range slices.Sorted(maps.Keys(src.modules)) {
		m := src.modules[name]
		modules = append(modules, m)
		if !m.Package.Path.Equal(ast.MustParseRef("data.ztbank.authz")) {
			continue
		}
		for _, r := range m.Rules {
			if r.Head.Name.String() != "decision" {
				continue
			}
			if r.Default {
				def = r
			} else if chain != nil {
				return nil, fmt.Errorf("%w: decision has more than one definition", errUnsupported)
			} else {
				chain = r
			}
		}
	}
	if chain == nil || def == nil {
		return nil, fmt.Errorf("%w: no default and chained decision rule", errUnsupported)
	}
	res := &residual{}
	var err error
	if res.def, err = constDecision(def.Head.Value); err != nil {
		return nil, err
	}
	store := inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true))
	i := 0
	for step := chain; step != nil; step, i = step.Else, i+1 {
		d, err := constDecision(step.Head.Value)
		if err != nil {
			return nil, err
		}
		pq, err := partialCondition(ctx, step.Body, i, store, modules)
		if err != nil {
			return nil, fmt.Errorf("partially evaluate decision condition %d: %w", i, err)
		}
		c := compiler{rules: map[string]*rule{}}
		if err := c.support(pq.Support); err != nil {
			return nil, err
		}
		cond := &rule{}
		for _, q := range pq.Queries {
			body, err := c.body(q)
			if err != nil {
				return nil, err
			}
			cond.bodies = append(cond.bodies, body)
		}
		cond.order()
		res.steps = append(res.steps, residualStep{cond: cond, decision: d})
	}
	return res, nil
}

// constDecision reads {"allow": bool, "reason": string} from a rule head.
func constDecision(t *ast.Term) (Decision, error) {
	obj, ok := t.Value.(ast.Object)
	if !ok || obj.Len() != 2 {
		return Decision{}, fmt.Errorf("%w: decision value %v is not a constant {allow, reason}", errUnsupported, t)
	}
	allow, okA := obj.Get(ast.StringTerm("allow")).Value.(ast.Boolean)
	reason, okR := obj.Get(ast.StringTerm("reason")).Value.(ast.String)
	if !okA || !okR || reason == "" {
		return Decision{}, fmt.Errorf("%w: decision value %v is not a constant {allow, reason}", errUnsupported, t)
	}
	return Decision{Allow: bool(allow), Reason: string(reason)}, nil
}

type compiler struct{ rules map[string]*rule }

// support compiles the support rules partial evaluation produced (boolean rules without
// arguments, referenced as data.<namespace>.<name>). They are registered before their
// bodies are compiled, since they may refer to one another.
func (c *compiler) support(mods []*ast.Module) error {
	type pending struct {
		r    *rule
		body ast.Body
	}
	var todo []pending
	for _, m := range mods {
		for _, r := range m.Rules {
			if r.Default || r.Else != nil || len(r.Head.Args) > 0 || !r.Head.Value.Equal(ast.BooleanTerm(true)) {
				return fmt.Errorf("%w: support rule %v", errUnsupported, r.Head)
			}
			path := r.Path().String()
			if c.rules[path] == nil {
				c.rules[path] = &rule{}
			}
			todo = append(todo, pending{c.rules[path], r.Body})
		}
	}
	for _, p := range todo {
		body, err := c.body(p.body)
		if err != nil {
			return err
		}
		p.r.bodies = append(p.r.bodies, body)
	}
	for _, r := range c.rules {
		r.order()
	}
	return nil
}

// order puts the rule's cheapest bodies first. A rule holds when any body does and bodies
// bind nothing outside themselves, so the order changes how soon evaluation stops, never the
// result. Partial evaluation emits the bodies in the policy's own order, which often leaves
// the common case last: the owner check of a customer reading her own account came after
// seventeen bodies about staff roles, each iterating the user's roles.
func (r *rule) order() {
	slices.SortStableFunc(r.bodies, func(a, b []expr) int { return bodyCost(a) - bodyCost(b) })
}

// bodyCost estimates what proving or refuting a body costs: one per expression, more for an
// expression that iterates an input array or consults a support rule.
func bodyCost(body []expr) int {
	cost := 0
	for _, x := range body {
		cost++
		switch {
		case x.op == opRule:
			cost += 8
		case x.args[0].kind == termInput && x.args[0].index != "", x.args[1].kind == termInput && x.args[1].index != "":
			cost += 4
		}
	}
	return cost
}

func (c *compiler) body(b ast.Body) ([]expr, error) {
	out := make([]expr, 0, len(b))
	for _, e := range b {
		x, err := c.expr(e)
		if err != nil {
			return nil, fmt.Errorf("%w (in %v)", err, e)
		}
		out = append(out, x)
	}
	return out, nil
}

func (c *compiler) expr(e *ast.Expr) (expr, error) {
	if len(e.With) > 0 {
		return expr{}, fmt.Errorf("%w: with", errUnsupported)
	}
	x := expr{negated: e.Negated}
	switch t := e.Terms.(type) {
	case *ast.Term:
		if ref, ok := t.Value.(ast.Ref); ok && ref.HasPrefix(ast.DefaultRootRef) {
			r, ok := c.rules[ref.String()]
			if !ok {
				return expr{}, fmt.Errorf("%w: data reference %v", errUnsupported, ref)
			}
			x.op, x.rule = opRule, r
			return x, nil
		}
		a, err := compileTerm(t)
		if err != nil {
			return expr{}, err
		}
		x.op, x.args[0] = opTruthy, a
		return x, nil
	case []*ast.Term:
		ops := e.Operands()
		name := e.Operator().String()
		want := 2
		switch name {
		case ast.Equality.Name, ast.Equal.Name:
			x.op = opUnify
		case ast.NotEqual.Name:
			x.op = opNeq
		case ast.StartsWith.Name:
			x.op = opStartsWith
		case ast.Member.Name:
			x.op = opMember
		case ast.Count.Name:
			x.op = opCount // count(x, n) with the result as the second operand
		default:
			return expr{}, fmt.Errorf("%w: call %s", errUnsupported, name)
		}
		if len(ops) != want {
			return expr{}, fmt.Errorf("%w: %s with %d operands", errUnsupported, name, len(ops))
		}
		for i, op := range ops {
			a, err := compileTerm(op)
			if err != nil {
				return expr{}, err
			}
			// Objects of the input are only ever tested for presence; the compiled
			// residual does not compare or count them.
			if a.kind == termInput && a.index == "" && objectPath(a.path) {
				return expr{}, fmt.Errorf("%w: %s compares the object input.%s", errUnsupported, name, strings.Join(a.path, "."))
			}
			x.args[i] = a
		}
		// count's second operand is its result: binding it is outside the fragment.
		if x.op == opCount && x.args[1].kind == termVar {
			return expr{}, fmt.Errorf("%w: count into a variable", errUnsupported)
		}
		return x, nil
	}
	return expr{}, errUnsupported
}

func compileTerm(t *ast.Term) (term, error) {
	switch v := t.Value.(type) {
	case ast.String:
		return term{kind: termConst, value: val{kind: vString, s: string(v)}}, nil
	case ast.Boolean:
		return term{kind: termConst, value: val{kind: vBool, b: bool(v)}}, nil
	case ast.Number:
		n, ok := v.Int()
		if !ok {
			return term{}, fmt.Errorf("%w: number %v", errUnsupported, v)
		}
		return term{kind: termConst, value: val{kind: vInt, n: n}}, nil
	case *ast.Array:
		ss := make([]string, 0, v.Len())
		for i := range v.Len() {
			s, ok := v.Elem(i).Value.(ast.String)
			if !ok {
				return term{}, fmt.Errorf("%w: array %v", errUnsupported, v)
			}
			ss = append(ss, string(s))
		}
		return term{kind: termConst, value: val{kind: vStrings, ss: ss}}, nil
	case ast.Var:
		return term{kind: termVar, name: string(v)}, nil
	case ast.Ref:
		if !v[0].Equal(ast.InputRootDocument) {
			return term{}, fmt.Errorf("%w: reference %v", errUnsupported, v)
		}
		out := term{kind: termInput}
		for i, seg := range v[1:] {
			switch s := seg.Value.(type) {
			case ast.String:
				out.path = append(out.path, string(s))
			case ast.Var:
				if i != len(v)-2 {
					return term{}, fmt.Errorf("%w: variable inside %v", errUnsupported, v)
				}
				out.index = string(s)
			default:
				return term{}, fmt.Errorf("%w: reference %v", errUnsupported, v)
			}
		}
		// Only paths Input.lookup knows: anything deeper (a route parameter, say) would
		// read as undefined here while OPA sees a value.
		if !knownPath(out.path) {
			return term{}, fmt.Errorf("%w: input.%s", errUnsupported, strings.Join(out.path, "."))
		}
		return out, nil
	}
	return term{}, fmt.Errorf("%w: term %v", errUnsupported, t)
}

// envs recycles evaluation environments. An env on decide's stack would escape anyway (its
// slices point into its own buffers), costing one 640-byte allocation per decision.
var envs = sync.Pool{New: func() any {
	e := new(env)
	e.names, e.vals = e.nameBuf[:0], e.valBuf[:0]
	return e
}}

// decide runs the chain on in.
func (r *residual) decide(in *Input) Decision {
	e := envs.Get().(*env)
	defer envs.Put(e)
	e.truncate(0)
	for _, s := range r.steps {
		if s.cond.holds(in, e) {
			return s.decision
		}
	}
	return r.def
}

type valKind uint8

const (
	vString valKind = iota + 1
	vBool
	vInt
	vStrings
	vObject // an object of the input: the residual only tests it for presence
)

// val is a value of the residual's domain, unboxed so evaluation does not allocate for it.
type val struct {
	kind valKind
	b    bool
	n    int
	s    string
	ss   []string
}

// env holds the local variables bound so far; residual bodies bind a handful at most, so
// the buffers live on the stack of decide.
type env struct {
	names   []string
	vals    []val
	nameBuf [8]string
	valBuf  [8]val
}

func (e *env) get(name string) (val, bool) {
	for i := len(e.names) - 1; i >= 0; i-- {
		if e.names[i] == name {
			return e.vals[i], true
		}
	}
	return val{}, false
}

func (e *env) bound(name string) bool { _, ok := e.get(name); return ok }

func (e *env) push(name string, v val) {
	if name != "_" {
		e.names, e.vals = append(e.names, name), append(e.vals, v)
	}
}

func (e *env) truncate(n int) { e.names, e.vals = e.names[:n], e.vals[:n] }

// holds reports whether any body holds. Rules are closed: a body starts from no bindings.
func (r *rule) holds(in *Input, e *env) bool {
	mark := len(e.names)
	for _, b := range r.bodies {
		ok := conj(in, b, e)
		e.truncate(mark)
		if ok {
			return true
		}
	}
	return false
}

// conj reports whether body holds from its first expression on, backtracking over the
// solutions of each expression (an expression has several when it iterates an array).
func conj(in *Input, body []expr, e *env) bool {
	if len(body) == 0 {
		return true
	}
	x, rest := &body[0], body[1:]
	if x.negated {
		mark := len(e.names)
		found := x.solve(in, e, nil)
		e.truncate(mark)
		return !found && conj(in, rest, e)
	}
	return x.solve(in, e, rest)
}

// solve reports whether x has a solution under e for which rest holds.
func (x *expr) solve(in *Input, e *env, rest []expr) bool {
	if x.op == opRule {
		return x.rule.holds(in, e) && conj(in, rest, e)
	}
	a, b := &x.args[0], &x.args[1]
	if x.op == opUnify {
		if a.kind == termVar && !e.bound(a.name) {
			a, b = b, a
		}
		if b.kind == termVar && !e.bound(b.name) { // binds b to each value of a
			return a.each(in, e, func(v val) bool {
				mark := len(e.names)
				e.push(b.name, v)
				ok := conj(in, rest, e)
				e.truncate(mark)
				return ok
			})
		}
	}
	if !a.iterates(e) && !b.iterates(e) { // the common case: one value each, no closure
		va, ok := a.get(in, e)
		if !ok {
			return false
		}
		vb, ok := val{}, true
		if x.op != opTruthy {
			vb, ok = b.get(in, e)
		}
		return ok && x.test(va, vb) && conj(in, rest, e)
	}
	return a.each(in, e, func(va val) bool {
		if x.op == opTruthy {
			return x.test(va, val{}) && conj(in, rest, e)
		}
		return b.each(in, e, func(vb val) bool { return x.test(va, vb) && conj(in, rest, e) })
	})
}

// test applies x's operator to its operands' values.
func (x *expr) test(a, b val) bool {
	switch x.op {
	case opTruthy:
		return a.kind != vBool || a.b
	case opUnify:
		return equal(a, b)
	case opNeq:
		return !equal(a, b)
	case opStartsWith:
		return a.kind == vString && b.kind == vString && strings.HasPrefix(a.s, b.s)
	case opMember:
		return b.kind == vStrings && slices.ContainsFunc(b.ss, func(s string) bool { return a.kind == vString && a.s == s })
	case opCount:
		n, ok := length(a)
		return ok && b.kind == vInt && n == b.n
	}
	return false
}

// iterates reports whether t stands for each element of an input array (an unbound index).
func (t *term) iterates(e *env) bool {
	return t.kind == termInput && t.index != "" && !e.bound(t.index)
}

// get returns t's single value under e; t must not iterate.
func (t *term) get(in *Input, e *env) (val, bool) {
	switch t.kind {
	case termConst:
		return t.value, true
	case termVar:
		return e.get(t.name)
	}
	v, ok := in.lookup(t.path)
	if !ok || t.index == "" {
		return v, ok
	}
	i, _ := e.get(t.index)
	if v.kind != vStrings || i.kind != vInt || i.n < 0 || i.n >= len(v.ss) {
		return val{}, false
	}
	return val{kind: vString, s: v.ss[i.n]}, true
}

// each calls k with each value of t under e until k returns true (none when undefined, one
// per array element when t iterates), and reports whether k did.
func (t *term) each(in *Input, e *env, k func(val) bool) bool {
	if !t.iterates(e) {
		v, ok := t.get(in, e)
		return ok && k(v)
	}
	v, ok := in.lookup(t.path)
	if !ok || v.kind != vStrings {
		return false
	}
	for i, s := range v.ss {
		mark := len(e.names)
		e.push(t.index, val{kind: vInt, n: i})
		ok := k(val{kind: vString, s: s})
		e.truncate(mark)
		if ok {
			return true
		}
	}
	return false
}

// lookup returns the value at path in the input document that value() builds for in,
// with the same members omitted; it must stay in step with value (a test compares them).
func (in *Input) lookup(path []string) (val, bool) {
	str := func(s string) (val, bool) { return val{kind: vString, s: s}, true }
	obj := val{kind: vObject}
	if len(path) == 0 {
		return obj, true
	}
	if len(path) > 2 {
		return val{}, false
	}
	member := ""
	if len(path) == 2 {
		member = path[1]
	}
	switch path[0] {
	case "caller":
		if in.Caller.IsZero() || member != "" {
			return val{}, false
		}
		return str(in.Caller.String())
	case "action":
		if member != "" {
			return val{}, false
		}
		return str(in.Action)
	case "user":
		if in.User.IsZero() {
			return val{}, false
		}
		switch member {
		case "":
			return obj, true
		case "id":
			return str(in.User.String())
		case "tenant":
			return str(in.Tenant)
		case "roles":
			return val{kind: vStrings, ss: in.Roles}, true
		}
	case "route":
		switch member {
		case "":
			return obj, true
		case "method":
			return str(in.Method)
		case "pattern":
			return str(in.Route)
		case "params":
			return obj, true
		case "from":
			return val{kind: vStrings, ss: in.From}, true
		case "workload_only":
			return val{kind: vBool, b: in.WorkloadOnly}, true
		}
	case "resource":
		res := in.Resource
		if res == nil {
			return val{}, false
		}
		switch member {
		case "":
			return obj, true
		case "tenant":
			return str(res.Tenant)
		case "owner":
			if !res.Owner.IsZero() {
				return str(res.Owner.String())
			}
		case "kind":
			if res.Kind != "" {
				return str(res.Kind)
			}
		case "id":
			if res.ID != "" {
				return str(res.ID)
			}
		}
	}
	return val{}, false
}

// knownPath reports whether path is one Input.lookup resolves.
func knownPath(path []string) bool {
	switch strings.Join(path, ".") {
	case "", "caller", "action", "user", "user.id", "user.tenant", "user.roles",
		"route", "route.method", "route.pattern", "route.params", "route.from", "route.workload_only",
		"resource", "resource.tenant", "resource.owner", "resource.kind", "resource.id":
		return true
	}
	return false
}

// objectPath reports whether path names an object of the input document.
func objectPath(path []string) bool {
	switch strings.Join(path, ".") {
	case "", "user", "route", "resource", "route.params":
		return true
	}
	return false
}

// equal compares two values of the residual's domain as Rego would. Objects are never
// compared (the compiler refuses it), so they are unequal to everything.
func equal(a, b val) bool {
	if a.kind != b.kind {
		return false
	}
	switch a.kind {
	case vString:
		return a.s == b.s
	case vBool:
		return a.b == b.b
	case vInt:
		return a.n == b.n
	case vStrings:
		return slices.Equal(a.ss, b.ss)
	}
	return false
}

// length is count() for the values the residual may count.
func length(v val) (int, bool) {
	switch v.kind {
	case vString:
		return utf8.RuneCountInString(v.s), true
	case vStrings:
		return len(v.ss), true
	}
	return 0, false
}

// partialCondition partially evaluates condition i of the decision chain (body) against
// the fixed data in store, input left unknown: one step of compileResidual.
func partialCondition(ctx context.Context, body ast.Body, i int, store storage.Store, modules []*ast.Module) (*rego.PartialQueries, error) {
	opts := []func(*rego.Rego){
		rego.ParsedQuery(body.Copy()), rego.Package("ztbank.authz"),
		rego.Store(store), rego.StoreReadAST(true), rego.SetRegoVersion(ast.RegoV1),
		rego.Unknowns([]string{"input"}), rego.PartialNamespace(fmt.Sprintf("residual_c%d", i)),
	}
	for _, m := range modules {
		opts = append(opts, rego.ParsedModule(m))
	}
	return rego.New(opts...).Partial(ctx)
}
