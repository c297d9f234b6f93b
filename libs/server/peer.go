package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ztbank/ztbank/libs/problem"
)

// Call sends method path to the peer, with body as JSON when it is not nil, and returns the
// peer's answer whatever its status; the caller reads and closes it. When no answer comes
// (the peer restarting or unreachable, the handshake refused, no answer before ctx's
// deadline) the error wraps problem.ErrUnavailable, so a handler that returns it answers 503
// with Retry-After: the request can succeed later. Only a caller that gave up (ctx
// cancelled) gets the bare error.
func (p *Peer) Call(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		if !errors.Is(ctx.Err(), context.Canceled) {
			err = fmt.Errorf("%w: %w", problem.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("%s %s %s: %w", p.Name, method, path, err)
	}
	return resp, nil
}
