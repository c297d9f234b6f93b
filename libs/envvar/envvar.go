// Package envvar is how ztbank binaries read their environment: every variable a binary may
// read is declared once (name, default, meaning), read through a Reader that records what it
// was asked for, and rendered into docs/configuration.md from the same declarations. The deploy
// contract test uses the record to prove that every variable a manifest sets is one the
// binary reads, and the declarations to prove that the documentation lists every one.
package envvar

import (
	"fmt"
	"slices"
	"strings"
)

// Var declares one environment variable, or a family of them when Name ends in "*"
// (ZTBANK_PEER_ADDR_*: one per peer workload).
type Var struct {
	Name string
	// Default is what an unset variable means, as a short phrase ("30s", "the topology's
	// address"); empty when there is none (required, or the feature is off).
	Default string
	// Doc is one sentence: what the variable sets and, when it matters, who reads it.
	Doc string
}

// family reports whether v declares a family of variables, and its prefix.
func (v Var) family() (string, bool) {
	p, ok := strings.CutSuffix(v.Name, "*")
	return p, ok
}

// Matches reports whether the variable name is the one v declares or one of its family.
func (v Var) Matches(name string) bool {
	if p, ok := v.family(); ok {
		return strings.HasPrefix(name, p) && len(name) > len(p)
	}
	return v.Name == name
}

// Join concatenates declaration lists, keeping the first declaration of a repeated name.
func Join(lists ...[]Var) []Var {
	var out []Var
	for _, l := range lists {
		for _, v := range l {
			if !slices.ContainsFunc(out, func(o Var) bool { return o.Name == v.Name }) {
				out = append(out, v)
			}
		}
	}
	return out
}

// Reader reads declared variables from a getenv function and records every name it was asked
// for, set or not. Reading a name nothing declares is a programming error: it is recorded and
// reported by Err, so a loader cannot grow an undocumented variable without its test failing.
type Reader struct {
	getenv     func(string) string
	vars       []Var
	read       []string
	undeclared []string
}

// NewReader reads from getenv the variables vars declares.
func NewReader(getenv func(string) string, vars []Var) *Reader {
	return &Reader{getenv: getenv, vars: vars}
}

// Get returns the variable's value ("" when unset) and records the read. Its method value
// r.Get has the getenv signature, so library loaders that take a getenv read through it.
func (r *Reader) Get(name string) string {
	if !slices.Contains(r.read, name) {
		r.read = append(r.read, name)
	}
	if !slices.ContainsFunc(r.vars, func(v Var) bool { return v.Matches(name) }) && !slices.Contains(r.undeclared, name) {
		r.undeclared = append(r.undeclared, name)
	}
	return r.getenv(name)
}

// Or returns the variable's value, or def when it is unset or empty.
func (r *Reader) Or(name, def string) string {
	if v := r.Get(name); v != "" {
		return v
	}
	return def
}

// Read returns every name read so far, sorted.
func (r *Reader) Read() []string {
	out := slices.Clone(r.read)
	slices.Sort(out)
	return out
}

// Err reports reads of undeclared names.
func (r *Reader) Err() error {
	if len(r.undeclared) == 0 {
		return nil
	}
	return fmt.Errorf("read undeclared environment variable(s) %s: declare them in the binary's envvar list", strings.Join(r.undeclared, ", "))
}

// Declared reports whether some declaration in vars covers name.
func Declared(vars []Var, name string) bool {
	return slices.ContainsFunc(vars, func(v Var) bool { return v.Matches(name) })
}

// Binary is one binary's declarations, for the generated documentation.
type Binary struct {
	Name    string // the binary, e.g. "account"
	Summary string // one sentence: what it is and how it is configured
	Vars    []Var
}

// Markdown renders the reference of every binary's variables, in the order given.
func Markdown(header string, bins []Binary) string {
	var b strings.Builder
	b.WriteString(header)
	for _, bin := range bins {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", bin.Name, bin.Summary)
		b.WriteString("| Variable | Default | Meaning |\n| --- | --- | --- |\n")
		for _, v := range bin.Vars {
			def := v.Default
			if def == "" {
				def = "—"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, cell(def), cell(v.Doc))
		}
	}
	return b.String()
}

// cell keeps a table cell on one line and its pipes literal.
func cell(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "|", `\|`)
}
