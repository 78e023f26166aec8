package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/authn"
	"github.com/airlock-mcp/airlock/recorder"
)

// Base is the path the handler is mounted at (with a trailing slash).
const Base = "/ui/"

// Defaults.
const (
	DefaultSessionTTL = 8 * time.Hour
	// loginTTL bounds one login round trip to the provider.
	loginTTL = 10 * time.Minute
	// verifyCacheTTL is how long a chain verification is reused.
	verifyCacheTTL = 5 * time.Second
	// maxFormBytes bounds a POSTed form.
	maxFormBytes = 16 << 10
)

// Log attribute keys.
const (
	keyError    = "error"
	keySubject  = "subject"
	keyApproval = "approval_id"
	keyCall     = "call_id"
	keyPath     = "path"
	keyReason   = "reason"
)

// Config configures the web UI.
type Config struct {
	Approvals *approval.Manager
	Recorder  *recorder.Recorder
	// OIDC is the provider the API uses: its issuer, algorithms and claim
	// paths (subject_claim, email_claim, groups_claim) apply to ID tokens
	// too. Its audience is not used here: an ID token's audience is ClientID.
	OIDC authn.OIDCConfig
	// ClientID and ClientSecret are the UI's own (confidential) OAuth client,
	// registered with redirect URI <origin of PublicURL>/ui/callback.
	ClientID, ClientSecret string
	// Scopes requested at login (default openid, profile, email; openid is
	// always added).
	Scopes []string
	// PublicURL is airlock's public /mcp URL; the UI lives at its origin +
	// "/ui" and the session cookie is Secure when it is https.
	PublicURL string
	// SessionKey (32 bytes) seals the session and login cookies (AES-256-GCM).
	SessionKey []byte
	// SessionTTL is how long a login lasts (default 8h); groups are read
	// again at the next login.
	SessionTTL time.Duration
	// ReviewersGroup, when set, names the group whose members may read every
	// transcript. Everyone else reads the calls they made, and the calls of
	// approvals they requested or may decide.
	ReviewersGroup string
	// Local is local mode (auth.mode none on a loopback listener): no
	// identity provider; the login page asks for a name and groups, and
	// every page says so (local.go). PublicURL must be a loopback URL, and
	// every request must come over loopback. OIDC, ClientID and
	// ClientSecret are not used.
	Local bool
	// LocalGroups are offered as checkboxes on the local login page (the
	// approver groups the policy names, say); others can be typed.
	LocalGroups []string

	Logger     *slog.Logger
	Clock      func() time.Time
	HTTPClient *http.Client
}

// CheckAndSetDefaults validates the config and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	switch {
	case c.Approvals == nil:
		return errors.New("web: Approvals is required")
	case c.Recorder == nil:
		return errors.New("web: Recorder is required")
	case c.ClientID == "" && !c.Local:
		return errors.New("ui.client_id is required")
	case len(c.SessionKey) != 32:
		return fmt.Errorf("ui: the session key must be 32 bytes, not %d", len(c.SessionKey))
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("public_url %q must be an absolute http(s) URL for the web UI", c.PublicURL)
	}
	if c.Local {
		if !isLoopbackHost(u.Hostname()) {
			return fmt.Errorf("the web UI's local mode (no identity provider) is only served on a loopback address, not %s", u.Host)
		}
	} else if c.OIDC.Audience == "" {
		c.OIDC.Audience = c.PublicURL // unused here, but required by the check
	}
	if !c.Local {
		if err := c.OIDC.CheckAndSetDefaults(); err != nil {
			return err
		}
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "profile", "email"}
	}
	if !contains(c.Scopes, "openid") {
		c.Scopes = append([]string{"openid"}, c.Scopes...)
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return nil
}

// Handler serves the web UI under /ui/.
type Handler struct {
	cfg    Config
	origin string // scheme://host of PublicURL
	secure bool   // cookies get Secure
	seal   *sealer
	pages  *pages
	mux    *http.ServeMux
	login  *loginFlow

	verifyMu sync.Mutex
	verified verifyResult
}

type verifyResult struct {
	at     time.Time
	report recorder.VerifyReport
	err    error
}

// New returns the UI handler. It does no I/O: the provider is discovered at
// the first login.
func New(cfg Config) (*Handler, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.PublicURL)
	seal, err := newSealer(cfg.SessionKey)
	if err != nil {
		return nil, err
	}
	pg, err := loadPages()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		cfg:    cfg,
		origin: u.Scheme + "://" + u.Host,
		secure: u.Scheme == "https",
		seal:   seal,
		pages:  pg,
	}
	h.login = &loginFlow{h: h}
	h.mux = h.routes()
	return h, nil
}

func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/approvals", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/approvals", http.StatusSeeOther)
	})
	mux.Handle("GET /ui/static/", staticHandler())
	if h.cfg.Local {
		mux.HandleFunc("GET /ui/login", h.localLoginForm)
		mux.HandleFunc("POST /ui/login", h.localLogin)
	} else {
		mux.HandleFunc("GET /ui/login", h.login.start)
		mux.HandleFunc("GET /ui/callback", h.login.callback)
	}
	mux.HandleFunc("POST /ui/logout", h.withSession(h.logout))
	mux.HandleFunc("GET /ui/logout", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/approvals", http.StatusSeeOther)
	})

	mux.HandleFunc("GET /ui/approvals", h.withSession(h.approvalsPage))
	mux.HandleFunc("GET /ui/approvals/{id}", h.withSession(h.approvalPage))
	mux.HandleFunc("POST /ui/approvals/{id}", h.withSession(h.decide))

	mux.HandleFunc("GET /ui/transcripts", h.withSession(h.transcriptsPage))
	mux.HandleFunc("GET /ui/transcripts/calls/{call_id}", h.withSession(h.callPage))
	mux.HandleFunc("GET /ui/transcripts/export", h.withSession(h.export))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		h.errorPage(w, r, nil, http.StatusNotFound, "Not found", "There is no page at "+r.URL.Path+".")
	})
	return mux
}

// ServeHTTP serves /ui/... with security headers on every response.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	if h.secure {
		hd.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if h.cfg.Local && !loopbackRequest(r) {
		h.cfg.Logger.Warn("web: local mode refused a request that did not come over loopback", keyPath, r.URL.Path, "remote", r.RemoteAddr, "host", r.Host)
		h.errorPage(w, r, nil, http.StatusForbidden, "Not served here", "Airlock's pages run in local mode (no identity provider), which is served on a loopback address only.")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// withSession requires a valid session; without one, a GET goes to the
// login and anything else is refused. POSTs are checked for CSRF here, so
// no handler that changes anything can forget it.
func (h *Handler) withSession(fn func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := h.readSession(r)
		if err != nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.errorPage(w, r, nil, http.StatusUnauthorized, "Not logged in", "Your session has ended. Log in again and repeat what you were doing.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := r.ParseForm(); err != nil {
				h.errorPage(w, r, s, http.StatusBadRequest, "Bad request", "The form could not be read.")
				return
			}
			if why := h.checkCSRF(r, s); why != "" {
				h.cfg.Logger.Warn("web: request refused (CSRF)", keySubject, s.Subject, keyPath, r.URL.Path, keyReason, why)
				h.errorPage(w, r, s, http.StatusForbidden, "Request refused", "This form was not submitted from an Airlock page ("+why+"). Reload the page and try again.")
				return
			}
		}
		fn(w, r, s)
	}
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *session) {
	h.clearCookie(w, sessionCookie)
	h.render(w, r, nil, http.StatusOK, "loggedout", "Logged out", nil)
}

// verify returns the chain verification, reusing one a few seconds old.
func (h *Handler) verify(ctx context.Context) (recorder.VerifyReport, error) {
	h.verifyMu.Lock()
	defer h.verifyMu.Unlock()
	now := time.Now()
	if !h.verified.at.IsZero() && now.Sub(h.verified.at) < verifyCacheTTL {
		return h.verified.report, h.verified.err
	}
	rep, err := h.cfg.Recorder.Verify(ctx)
	h.verified = verifyResult{at: now, report: rep, err: err}
	return rep, err
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// localPath reports whether p is a path inside the UI, safe to redirect to.
func localPath(p string) bool {
	return strings.HasPrefix(p, Base) && !strings.HasPrefix(p, "//") && !strings.Contains(p, "\\") && !strings.ContainsAny(p, "\r\n")
}
