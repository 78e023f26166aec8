package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/airlock-mcp/airlock/broker/authn"
)

// loginFlow is the OpenID Connect authorization code flow with PKCE. The
// provider is discovered at the first login and kept once found; while it
// is unreachable every login says so and tries again.
type loginFlow struct {
	h *Handler

	mu       sync.Mutex
	provider *oidc.Provider
}

func (l *loginFlow) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, l.h.cfg.HTTPClient)
}

// discover returns the provider, discovering it if not yet known.
func (l *loginFlow) discover(ctx context.Context) (*oidc.Provider, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.provider != nil {
		return l.provider, nil
	}
	p, err := oidc.NewProvider(l.ctx(ctx), l.h.cfg.OIDC.Issuer)
	if err != nil {
		return nil, err
	}
	l.provider = p
	return p, nil
}

func (l *loginFlow) oauth2Config(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     l.h.cfg.ClientID,
		ClientSecret: l.h.cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  l.h.origin + "/ui/callback",
		Scopes:       l.h.cfg.Scopes,
	}
}

// start sends the browser to the provider with a fresh state, nonce and
// PKCE verifier, kept in a short-lived sealed cookie.
func (l *loginFlow) start(w http.ResponseWriter, r *http.Request) {
	h := l.h
	p, err := l.discover(r.Context())
	if err != nil {
		h.cfg.Logger.Error("web: identity provider unreachable", "issuer", h.cfg.OIDC.Issuer, keyError, err)
		h.errorPage(w, r, nil, http.StatusServiceUnavailable, "Identity provider unreachable",
			fmt.Sprintf("Airlock could not reach the identity provider at %s to log you in (%v). Try again in a moment; if it persists, ask an operator to check auth.oidc.issuer.", h.cfg.OIDC.Issuer, err))
		return
	}
	next := r.URL.Query().Get("next")
	if !localPath(next) {
		next = "/ui/approvals"
	}
	st := loginState{
		State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Next: next, Expires: h.cfg.Clock().Add(loginTTL),
	}
	if err := h.setCookie(w, loginCookie, st, st.Expires); err != nil {
		h.errorPage(w, r, nil, http.StatusInternalServerError, "Login failed", "The login could not be started.")
		return
	}
	u := l.oauth2Config(p).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier))
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// callback completes the login: state, code exchange with the PKCE
// verifier, ID token signature/issuer/audience/expiry (go-oidc), nonce,
// then the identity from the claims, with the API's claim rules.
func (l *loginFlow) callback(w http.ResponseWriter, r *http.Request) {
	h := l.h
	fail := func(status int, msg string, err error) {
		if err != nil {
			h.cfg.Logger.Warn("web: login failed", keyReason, msg, keyError, err)
		}
		h.errorPage(w, r, nil, status, "Login failed", msg)
	}
	var st loginState
	c, err := r.Cookie(loginCookie)
	if err != nil || h.seal.open(loginCookie, c.Value, &st) != nil || !h.cfg.Clock().Before(st.Expires) {
		fail(http.StatusBadRequest, "This login was not started here or took too long. Start again from the login page.", nil)
		return
	}
	h.clearCookie(w, loginCookie) // one use
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(st.State)) != 1 {
		fail(http.StatusBadRequest, "The login answer does not match the login that was started (state). Start again.", nil)
		return
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusForbidden, "The identity provider refused the login: "+e+" "+q.Get("error_description"), nil)
		return
	}
	p, err := l.discover(r.Context())
	if err != nil {
		fail(http.StatusServiceUnavailable, "The identity provider is unreachable.", err)
		return
	}
	ctx := l.ctx(r.Context())
	tok, err := l.oauth2Config(p).Exchange(context.WithValue(ctx, oauth2.HTTPClient, h.cfg.HTTPClient), q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		fail(http.StatusBadGateway, "The identity provider did not accept the login code.", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusBadGateway, "The identity provider returned no ID token (is the openid scope allowed for this client?).", nil)
		return
	}
	idt, err := p.Verifier(&oidc.Config{
		ClientID:             h.cfg.ClientID,
		SupportedSigningAlgs: h.cfg.OIDC.Algorithms,
		Now:                  h.cfg.Clock,
	}).Verify(ctx, raw)
	if err != nil {
		fail(http.StatusForbidden, "The ID token did not verify.", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		fail(http.StatusForbidden, "The ID token was not issued for this login (nonce).", errors.New("nonce mismatch"))
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		fail(http.StatusForbidden, "The ID token's claims could not be read.", err)
		return
	}
	id, err := authn.IdentityFromClaims(h.cfg.OIDC, claims)
	if err != nil {
		fail(http.StatusForbidden, "The ID token does not say who you are: "+err.Error(), err)
		return
	}
	if err := h.newSession(w, id); err != nil {
		fail(http.StatusInternalServerError, "Your session could not be stored: "+err.Error(), err)
		return
	}
	h.cfg.Logger.Info("web: login", keySubject, id.Subject, "groups", len(id.Groups))
	http.Redirect(w, r, st.Next, http.StatusSeeOther)
}
