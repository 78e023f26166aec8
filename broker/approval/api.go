package approval

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/airlock-mcp/airlock/policy"
)

// maxAPIBody bounds a decision request body.
const maxAPIBody = 16 << 10

// APIHandler serves the approvals JSON API, with full paths (mount it at
// /api/approvals and /api/approvals/, without stripping the prefix):
//
//	GET  /api/approvals[?state=pending&limit=50]  approvals the caller requested or may decide; open ones first
//	GET  /api/approvals/{id}                      one approval (requester or approver)
//	POST /api/approvals/{id}/approve              {"reason": "..."}
//	POST /api/approvals/{id}/deny                 {"reason": "..."}
//
// auth proves who is calling (the OIDC bearer token verifier); decisions
// are made with via "api". Errors are {"error": "..."} with 400, 401, 403,
// 404 or 409. Bearer tokens, not cookies, authenticate, so there is no
// cross-site request forgery to guard against here.
func (m *Manager) APIHandler(auth func(r *http.Request) (policy.Identity, error)) http.Handler {
	mux := http.NewServeMux()
	withIdentity := func(h func(w http.ResponseWriter, r *http.Request, who policy.Identity)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			who, err := auth(r)
			if err != nil || who.Subject == "" {
				w.Header().Set("WWW-Authenticate", "Bearer")
				writeError(w, http.StatusUnauthorized, "authentication required: present a valid bearer token")
				return
			}
			h(w, r, who)
		}
	}
	mux.HandleFunc("GET /api/approvals", withIdentity(m.apiList))
	mux.HandleFunc("GET /api/approvals/{id}", withIdentity(m.apiGet))
	mux.HandleFunc("POST /api/approvals/{id}/approve", withIdentity(m.apiDecide(Approve)))
	mux.HandleFunc("POST /api/approvals/{id}/deny", withIdentity(m.apiDecide(Deny)))
	return mux
}

func (m *Manager) apiList(w http.ResponseWriter, r *http.Request, who policy.Identity) {
	f := ListFilter{Viewer: &who, State: State(r.URL.Query().Get("state"))}
	switch f.State {
	case "", Pending, Approved, Denied, Expired, Consumed:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown state %q", f.State))
		return
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, "limit must be between 1 and 500")
			return
		}
		f.Limit = n
	}
	list, err := m.List(r.Context(), f)
	if err != nil {
		m.cfg.Logger.Error("listing approvals", "error", err)
		writeError(w, http.StatusInternalServerError, "could not list approvals")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": list})
}

func (m *Manager) apiGet(w http.ResponseWriter, r *http.Request, who policy.Identity) {
	a, err := m.Status(r.Context(), r.PathValue("id"), who)
	if err != nil {
		m.writeDecisionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (m *Manager) apiDecide(v Verdict) func(http.ResponseWriter, *http.Request, policy.Identity) {
	return func(w http.ResponseWriter, r *http.Request, who policy.Identity) {
		var body struct {
			Reason string `json:"reason"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, `the body must be JSON: {"reason": "..."}`)
			return
		}
		a, err := m.Decide(r.Context(), r.PathValue("id"), who, v, body.Reason, ViaAPI)
		if err != nil {
			m.writeDecisionError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	}
}

// writeDecisionError maps an error from Status or Decide to its HTTP status.
// Sentinel messages are written for the caller to read; anything else is
// logged and answered with a generic 500.
func (m *Manager) writeDecisionError(w http.ResponseWriter, err error) {
	if status := HTTPStatus(err); status != http.StatusInternalServerError {
		writeError(w, status, err.Error())
		return
	}
	m.cfg.Logger.Error("approvals API", "error", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}

// HTTPStatus is the HTTP status of an error from the Manager: the
// sentinel's (whose message is written for people to read), or 500.
func HTTPStatus(err error) int {
	for _, e := range []struct {
		err    error
		status int
	}{
		{ErrInvalid, http.StatusBadRequest},
		{ErrNotFound, http.StatusNotFound},
		{ErrForbidden, http.StatusForbidden},
		{ErrSelfApproval, http.StatusForbidden},
		{ErrNotApprover, http.StatusForbidden},
		{ErrAlreadyDecided, http.StatusConflict},
		{ErrExpired, http.StatusConflict},
		{ErrConsumed, http.StatusConflict},
		{ErrDenied, http.StatusConflict},
		{ErrApproved, http.StatusConflict},
		{ErrChanged, http.StatusConflict},
		{ErrUnrecorded, http.StatusServiceUnavailable},
		{ErrUncertain, http.StatusServiceUnavailable},
	} {
		if errors.Is(err, e.err) {
			return e.status
		}
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}
