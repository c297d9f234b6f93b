package web

import (
	"bytes"
	"encoding/json"
)

// jsonLine encodes v on one line with HTML-significant characters escaped, as an SSE data
// field needs (no raw newline may appear inside it).
func jsonLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
