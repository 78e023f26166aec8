// Package web serves airlock's pages for approvers and reviewers under
// /ui: the approvals waiting for a decision, and the transcripts of calls.
// Pages are rendered on the server (html/template, assets embedded) and
// work without JavaScript (one embedded script keeps countdowns live). SQL
// is highlighted from PostgreSQL's own scanner, with the parser's facts
// beside it (highlight.go, facts.go); an approval's page shows the call's
// impact from its transcript (impact.go).
//
// With auth.mode none on loopback, Config.Local serves the pages without an
// identity provider: a person picks a name and groups, every page says so,
// and nothing is offered on any other address (local.go).
//
// Login is the OpenID Connect authorization code flow with PKCE, against
// the provider the API trusts, with the UI's own confidential client:
//
//	browser                       airlock /ui                        provider
//	  │ GET /ui/approvals            │                                  │
//	  │─────────────────────────────▶│ no session                       │
//	  │◀── 303 /ui/login?next=…      │                                  │
//	  │ GET /ui/login               ─▶ discovery (first login only)   ──▶│
//	  │◀── 303 authorize?state,nonce,code_challenge(S256)               │
//	  │    Set-Cookie airlock_login = seal(state, nonce, verifier, next)│
//	  │──────────────────────────────────────────────────────────────────▶│ login, consent
//	  │◀── 303 /ui/callback?code&state ─────────────────────────────────│
//	  │ GET /ui/callback            ─▶ state = cookie's; code + verifier ─▶│ token endpoint
//	  │                              │ ID token: signature, iss, aud=client_id, exp (go-oidc)
//	  │                              │ nonce = cookie's; identity from claims
//	  │                              │ (authn.IdentityFromClaims: groups_claim …)
//	  │◀── 303 next                  │ Set-Cookie airlock_session = seal(identity, csrf, exp)
//
// Both cookies are sealed with AES-256-GCM (key derived from
// Config.SessionKey), HttpOnly, SameSite=Lax, Path=/ui, Secure when the
// public URL is https. Every POST must carry the session's CSRF token in
// the form, and its Origin (or Referer) must be the UI's origin; withSession
// checks both before any handler runs.
//
// Decisions go through approval.Manager.Decide with via "web", so the rules
// are the approvals package's own: approver groups, never the requester,
// each approver once, only pending and unexpired approvals. Its errors are
// shown on the page with 403 or 409.
//
// Who sees what: approvals the viewer requested or may decide
// (approval.ListFilter.Viewer); transcripts of the calls the viewer made,
// of calls whose approval the viewer requested or may decide, and, for
// members of Config.ReviewersGroup, every call. See docs/web.md.
package web
