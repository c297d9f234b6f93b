package devoidc

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	loginPath          = "/login"
	authRequestIDParam = "authRequestID"
)

var (
	errLoginFailed     = errors.New("devoidc: wrong username or password")
	errTooManyFailures = errors.New("devoidc: too many failed logins for this request")
)

// loginForm is the whole login UI. The headless login parses it like a browser would (form
// action, hidden fields), so changing field names here is a protocol change for it too.
var loginForm = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>ztbank development login</title></head>
<body>
<h1>ztbank development login</h1>
<p>Demo users and their passwords are in the provider's passwords.json.</p>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="` + authRequestIDParam + `" value="{{.ID}}">
<label>Username <input name="username" autocomplete="username" value="{{.Username}}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Log in</button>
</form>
</body>
</html>
`))

type loginPage struct {
	Action, ID, Username, Error string
}

// loginHandler serves the login form for an auth request and checks what is posted to it.
// On success it sends the browser to op's callback, which issues the code.
type loginHandler struct {
	store       *storage
	issuer      string
	callbackURL func(context.Context, string) string
	log         *slog.Logger
}

func (h *loginHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The page holds a live auth request ID: never cache it, never frame it (clickjacking),
	// and let it post nowhere but here.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")

	switch r.Method {
	case http.MethodGet:
		id := r.URL.Query().Get(authRequestIDParam)
		if _, err := h.store.AuthRequestByID(r.Context(), id); err != nil {
			http.Error(w, "unknown or expired login request; start again from the application", http.StatusBadRequest)
			return
		}
		h.render(w, http.StatusOK, loginPage{ID: id})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "malformed form", http.StatusBadRequest)
			return
		}
		id, username := r.PostForm.Get(authRequestIDParam), r.PostForm.Get("username")
		err := h.store.checkLogin(id, username, r.PostForm.Get("password"))
		switch {
		case err == nil:
			h.log.Info("login", "user", username, "auth_request", id)
			ctx := op.ContextWithIssuer(r.Context(), h.issuer)
			http.Redirect(w, r, h.callbackURL(ctx, id), http.StatusSeeOther)
		case errors.Is(err, errLoginFailed):
			h.log.Warn("login failed", "user", username, "auth_request", id)
			h.render(w, http.StatusUnauthorized, loginPage{ID: id, Username: username, Error: "Wrong username or password."})
		case errors.Is(err, errTooManyFailures):
			h.log.Warn("login request ended after repeated failures", "user", username, "auth_request", id)
			http.Error(w, "too many failed attempts; start again from the application", http.StatusTooManyRequests)
		default:
			http.Error(w, "unknown or expired login request; start again from the application", http.StatusBadRequest)
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *loginHandler) render(w http.ResponseWriter, status int, page loginPage) {
	page.Action = loginPath
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := loginForm.Execute(w, page); err != nil {
		h.log.Error("render login form", "err", err)
	}
}
