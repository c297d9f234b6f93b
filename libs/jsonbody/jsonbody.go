// Package jsonbody is the one decoder of JSON request bodies in every ztbank service. It is
// stricter than encoding/json: besides unknown members it refuses data after the value,
// duplicate member names (encoding/json keeps the last one, so two parsers of the same body
// could each see a different value) and member names that differ from the declared ones only
// in letter case (encoding/json matches them case-insensitively, so "OWNER_ID" would be read
// as "owner_id"). Every refusal wraps problem.ErrBadRequest with a detail that names the
// member, safe to show to the client.
package jsonbody

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/ztbank/ztbank/libs/problem"
)

// maxDepth bounds nesting; request bodies are a few levels deep, and the walk is recursive.
const maxDepth = 32

// Read reads at most limit bytes from r and decodes them strictly into v (Unmarshal). A body
// longer than limit is refused as too large (413).
func Read(r io.Reader, limit int64, v any) error {
	b, err := ReadAll(r, limit)
	if err != nil {
		return err
	}
	return Unmarshal(b, v)
}

// ReadAll reads a request body of at most limit bytes, for a handler that needs the bytes
// themselves (to relay them) before decoding them with Unmarshal. Longer bodies are a 413.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		// A body cut short by a limit further out (the router's http.MaxBytesReader) is too
		// large, not malformed: 413, never a 400 or a 5xx.
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, problem.Errorf(problem.ErrTooLarge, fmt.Sprintf("body over %d bytes", mb.Limit))
		}
		return nil, problem.Errorf(problem.ErrBadRequest, "body unreadable")
	}
	if int64(len(b)) > limit {
		return nil, problem.Errorf(problem.ErrTooLarge, fmt.Sprintf("body over %d bytes", limit))
	}
	return b, nil
}

// Unmarshal decodes b, which must be exactly one JSON value, into v (a pointer). Object
// members must be named exactly as v's json tags declare, each at most once; nothing but
// whitespace may follow the value.
func Unmarshal(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("jsonbody: Unmarshal needs a non-nil pointer, got %T", v)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := walk(dec, rv.Type().Elem(), "", 0); err != nil {
		return err
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err == nil {
			return bad("data after the JSON value (%v at offset %d)", describe(tok), dec.InputOffset())
		}
		return bad("data after the JSON value at offset %d", dec.InputOffset())
	}
	// The walk proved every member name is one the type declares, spelled exactly; the
	// standard decoder now fills v (and runs the types' own UnmarshalJSON).
	std := json.NewDecoder(bytes.NewReader(b))
	std.DisallowUnknownFields()
	if err := std.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return bad("member %q has the wrong type (want %s)", te.Field, te.Type)
		}
		// A nested type's own strict decode (money.Money's) already said "request body".
		return bad("%s", strings.ReplaceAll(strings.TrimPrefix(err.Error(), "json: "), "request body: ", ""))
	}
	return nil
}

func bad(format string, args ...any) error {
	return problem.Errorf(problem.ErrBadRequest, "request body: "+fmt.Sprintf(format, args...))
}

func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(t))
	case string:
		return "a string"
	default:
		return fmt.Sprintf("%v", t)
	}
}

var (
	unmarshaler     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// walk reads one JSON value from dec, checking every object in it for duplicate member
// names and, where t is a struct decoded field by field, for names t does not declare
// exactly. t is nil where the Go type says nothing about the value's members (any, a type
// with its own UnmarshalJSON, which is then responsible for its own strictness).
func walk(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxDepth {
		return bad("nested deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return bad("empty or truncated JSON")
		}
		return bad("invalid JSON at offset %d", dec.InputOffset())
	}
	t = deref(t)
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil && !custom(t) {
			switch t.Kind() {
			case reflect.Struct:
				fields = fieldsOf(t)
			case reflect.Map:
				elem = t.Elem()
			}
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return bad("invalid JSON at offset %d", dec.InputOffset())
			}
			name, _ := kt.(string)
			at := join(path, name)
			if seen[name] {
				return bad("member %q appears more than once", at)
			}
			seen[name] = true
			next := elem
			if fields != nil {
				ft, known := fields[name]
				if !known {
					return bad("unknown member %q (member names are case-sensitive)", at)
				}
				next = ft
			}
			if err := walk(dec, next, at, depth+1); err != nil {
				return err
			}
		}
	case '[':
		var elem reflect.Type
		if t != nil && !custom(t) && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walk(dec, elem, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return bad("invalid JSON at offset %d", dec.InputOffset())
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer && !custom(t) {
		t = t.Elem()
	}
	if t != nil && t.Kind() == reflect.Interface {
		return nil
	}
	return t
}

// custom reports whether t (or *t) decodes itself.
func custom(t reflect.Type) bool {
	return t.Implements(unmarshaler) || reflect.PointerTo(t).Implements(unmarshaler) ||
		t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// fieldsOf lists the member names encoding/json decodes into struct t, exactly as declared,
// with embedded structs' fields promoted as encoding/json promotes them.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			if et := deref(f.Type); et != nil && et.Kind() == reflect.Struct {
				for k, v := range fieldsOf(et) {
					if _, taken := out[k]; !taken {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	fieldCache.Store(t, out)
	return out
}
