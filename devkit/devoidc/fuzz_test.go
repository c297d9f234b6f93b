package devoidc

import (
	"net/url"
	"testing"
)

// FuzzParseLoginForm feeds the headless client's form parser arbitrary pages: whatever a
// provider serves, it must return a form or an error, never panic.
func FuzzParseLoginForm(f *testing.F) {
	f.Add([]byte(`<form method="post" action="/login"><input type="hidden" name="authRequestID" value="x"><input name="username"></form>`))
	f.Add([]byte(`<html><body><form method="get"></form></body></html>`))
	f.Add([]byte(`<form method=POST action="http://[::1]:x/%zz"><input name=a value=b>`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, page []byte) {
		action, fields, err := parseLoginForm(page)
		if err != nil {
			return
		}
		if action == nil || fields == nil {
			t.Fatalf("parseLoginForm() = %v, %v, nil", action, fields)
		}
		if _, err := url.Parse(action.String()); err != nil {
			t.Errorf("action %q does not round-trip: %v", action, err)
		}
	})
}
