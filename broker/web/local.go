package web

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/policy"
)

// Local mode is the UI without an identity provider, for auth.mode none on
// a loopback listener (the demo): the login page asks for a name and
// groups and believes them, as auth.mode none believes every MCP caller on
// the machine. Every page says so in a banner. It is never offered on any
// other address:
//
//   - New refuses Config.Local unless PublicURL's host is a loopback
//     address (127.0.0.0/8, ::1, localhost);
//   - every request must have arrived on a loopback address, from one, and
//     name a loopback host (Host header: a page elsewhere that rebinds a
//     DNS name to 127.0.0.1 is refused), or it gets 403 and no form.
//
// Sessions are sealed cookies as with OIDC; the identity has no issuer and
// method "none", like the CLI's --as and the MCP caller of auth.mode none,
// so the approvals rules (never the requester, approver groups) apply
// unchanged: the agent's identity cannot approve its own call here either.

// localIssuer is the issuer of local identities (none, as for auth.mode
// none and the local CLI).
const localIssuer = ""

// localMethod is the identity method of a local session.
const localMethod = "none"

// maxLocalGroups bounds the groups one may pick.
const maxLocalGroups = 20

// isLoopbackHost reports whether host (no port) is a loopback name or IP.
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// hostOnly strips the port from a host[:port].
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// loopbackRequest reports whether r came to a loopback address from a
// loopback address and names a loopback host.
func loopbackRequest(r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok || local == nil {
		return false
	}
	if !isLoopbackHost(hostOnly(local.String())) {
		return false
	}
	return isLoopbackHost(hostOnly(r.RemoteAddr)) && isLoopbackHost(hostOnly(r.Host))
}

// localLoginState is what the login cookie holds between the form and its
// POST in local mode: the token the form must return.
type localLoginState struct {
	Token   string    `json:"token"`
	Next    string    `json:"next"`
	Expires time.Time `json:"exp"`
}

// localLoginForm shows the form where a person picks a name and groups.
func (h *Handler) localLoginForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !localPath(next) {
		next = "/ui/approvals"
	}
	st := localLoginState{Token: randomToken(), Next: next, Expires: h.cfg.Clock().Add(loginTTL)}
	if err := h.setCookie(w, loginCookie, st, st.Expires); err != nil {
		h.errorPage(w, r, nil, http.StatusInternalServerError, "Login failed", "The login could not be started.")
		return
	}
	h.render(w, r, nil, http.StatusOK, "locallogin", "Pick who you are", map[string]any{
		"Token": st.Token, "Next": next, "Groups": h.cfg.LocalGroups,
	})
}

// localLogin starts a session for the name and groups the form sent.
func (h *Handler) localLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.errorPage(w, r, nil, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	var st localLoginState
	c, err := r.Cookie(loginCookie)
	if err != nil || h.seal.open(loginCookie, c.Value, &st) != nil || !h.cfg.Clock().Before(st.Expires) ||
		subtle.ConstantTimeCompare([]byte(r.PostForm.Get("token")), []byte(st.Token)) != 1 {
		h.errorPage(w, r, nil, http.StatusForbidden, "Login refused", "This form was not sent from this Airlock's login page, or it took too long. Open the login page again.")
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
		h.errorPage(w, r, nil, http.StatusForbidden, "Login refused", "This form was sent from another site ("+o+").")
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	// The transcript records decisions under this name: one line of UTF-8
	// without control characters, as the CLI's --as.
	if name == "" || len(name) > 200 || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		h.render(w, r, nil, http.StatusBadRequest, "locallogin", "Pick who you are", map[string]any{
			"Token": st.Token, "Next": st.Next, "Groups": h.cfg.LocalGroups, "Error": "Type a name (one line, at most 200 characters, no control characters).",
		})
		return
	}
	var groups []string
	for _, g := range strings.FieldsFunc(r.PostForm.Get("groups"), func(c rune) bool { return c == ',' || c == ' ' }) {
		if !contains(groups, g) && len(groups) < maxLocalGroups {
			groups = append(groups, g)
		}
	}
	for _, g := range r.PostForm["group"] { // the checkboxes of the groups policy names
		if g != "" && !contains(groups, g) && len(groups) < maxLocalGroups {
			groups = append(groups, g)
		}
	}
	h.clearCookie(w, loginCookie)
	id := policy.Identity{Subject: name, Issuer: localIssuer, Groups: groups, Method: localMethod}
	if strings.Contains(name, "@") {
		id.Email = name
	}
	if err := h.newSession(w, id); err != nil {
		h.errorPage(w, r, nil, http.StatusInternalServerError, "Login failed", "Your session could not be stored: "+err.Error())
		return
	}
	h.cfg.Logger.Info("web: local login", keySubject, name, "groups", len(groups))
	http.Redirect(w, r, st.Next, http.StatusSeeOther)
}
