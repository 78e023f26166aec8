package web

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Cookie names. Both live under Path=/ui, HttpOnly, SameSite=Lax.
const (
	sessionCookie = "airlock_session"
	loginCookie   = "airlock_login"
	// maxCookie is the largest sealed cookie value written; browsers keep
	// about 4 KiB per cookie.
	maxCookie = 3800
)

var errNoSession = errors.New("no valid session")

// session is what the session cookie holds: the identity verified at login
// and the CSRF token of every form.
type session struct {
	Subject string    `json:"sub"`
	Email   string    `json:"email,omitempty"`
	Issuer  string    `json:"iss"`
	Groups  []string  `json:"groups,omitempty"`
	Method  string    `json:"method,omitempty"` // "" (oidc) or "none" (local mode)
	CSRF    string    `json:"csrf"`
	Expires time.Time `json:"exp"`
}

// Identity is the policy identity decisions are made as.
func (s *session) Identity() policy.Identity {
	method := s.Method
	if method == "" {
		method = "oidc"
	}
	return policy.Identity{Subject: s.Subject, Email: s.Email, Issuer: s.Issuer, Groups: s.Groups, Method: method}
}

// Name is how the UI shows the person.
func (s *session) Name() string {
	if s.Email != "" {
		return s.Email
	}
	return s.Subject
}

// loginState is what the login cookie holds between /ui/login and
// /ui/callback.
type loginState struct {
	State    string    `json:"state"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"` // PKCE
	Next     string    `json:"next"`
	Expires  time.Time `json:"exp"`
}

// sealer encrypts and authenticates cookie values with AES-256-GCM. The
// cookie's name is the additional data, so a value sealed for one cookie
// does not open as another.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	// A key derived for this purpose only, so the configured key could be
	// shared with another use without the two ever meeting.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("airlock-ui-cookie-v1"))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("web: session key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("web: session key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

func (s *sealer) seal(name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := s.aead.Seal(nonce, nonce, plain, []byte(name))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

func (s *sealer) open(name, value string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return errNoSession
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return errNoSession
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return errNoSession
	}
	return nil
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (h *Handler) readSession(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, errNoSession
	}
	var s session
	if err := h.seal.open(sessionCookie, c.Value, &s); err != nil {
		return nil, err
	}
	if s.Subject == "" || s.CSRF == "" || !h.cfg.Clock().Before(s.Expires) {
		return nil, errNoSession
	}
	if (s.Method == localMethod) != h.cfg.Local {
		return nil, errNoSession // a session of the other mode (the same key)
	}
	return &s, nil
}

// newSession seals a session for id into the session cookie.
func (h *Handler) newSession(w http.ResponseWriter, id policy.Identity) error {
	s := session{
		Subject: id.Subject, Email: id.Email, Issuer: id.Issuer, Groups: id.Groups,
		CSRF: randomToken(), Expires: h.cfg.Clock().Add(h.cfg.SessionTTL),
	}
	if id.Method == localMethod {
		s.Method = localMethod
	}
	return h.setCookie(w, sessionCookie, s, s.Expires)
}

func (h *Handler) setCookie(w http.ResponseWriter, name string, v any, expires time.Time) error {
	val, err := h.seal.seal(name, v)
	if err != nil {
		return err
	}
	if len(val) > maxCookie {
		return fmt.Errorf("the %s cookie would be %d bytes, more than browsers keep (too many groups?)", name, len(val))
	}
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: val, Path: "/ui",
		Expires: expires, MaxAge: int(time.Until(expires).Seconds()) + 1,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

func (h *Handler) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/ui", MaxAge: -1,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode,
	})
}

// checkCSRF returns why a POST is refused, or "". The form must carry the
// session's token; and when the browser says where the request comes from
// (Origin, else Referer), that must be this UI's origin.
func (h *Handler) checkCSRF(r *http.Request, s *session) string {
	tok := r.PostForm.Get("csrf")
	if tok == "" {
		return "no CSRF token"
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
		return "wrong CSRF token"
	}
	origin := h.origin
	if h.cfg.Local {
		origin = "http://" + r.Host // loopback, checked in ServeHTTP
	}
	if o := r.Header.Get("Origin"); o != "" {
		if o != origin {
			return "cross-origin request from " + o
		}
		return ""
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || u.Scheme+"://"+u.Host != origin {
			return "cross-origin referer"
		}
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return "cross-site request"
	}
	return ""
}
