package e2e

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDoFindsAnAlertTheErrorLost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alert string
		want  Layer
	}{
		{"bad certificate on the connection", alertBadCertificate, LayerMTLS},
		{"another alert on the connection", "tls: unknown certificate authority", Layer("tls-alert tls: unknown certificate authority")},
		{"no alert: the error is what it is", "", Layer("transport")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Transport: lostAlert{&alertConn{alert: tc.alert}}}
			req, _ := http.NewRequest(http.MethodGet, "https://127.0.0.1:1/internal/whoami", nil)
			got := do(client, req)
			if diff := cmp.Diff(tc.want, got.Layer); diff != "" {
				t.Errorf("layer (-want +got):\n%s", diff)
			}
		})
	}
}
