package web

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// approvalView is one approval as the pages show it.
type approvalView struct {
	approval.Approval
	Args      argsView
	MayDecide bool   // the viewer may decide it now
	Mine      bool   // the viewer requested it
	Open      bool   // pending: decisions are still taken
	Left      string // time left to decide (pending) or use (approved)
	Expiring  bool   // less than two minutes left
	CallLink  string // the requesting call's transcript
}

func (h *Handler) viewApproval(a approval.Approval, s *session) approvalView {
	id := s.Identity()
	v := approvalView{
		Approval:  a,
		Args:      viewArgs(a.Arguments),
		MayDecide: a.State == approval.Pending && a.MayDecide(id) && !decidedBy(a, s),
		Mine:      a.Requester.Is(id),
		Open:      a.State == approval.Pending,
	}
	if a.State == approval.Pending || a.State == approval.Approved {
		left := a.ExpiresAt.Sub(h.cfg.Clock())
		v.Left = fmtDuration(left.Truncate(time.Second))
		v.Expiring = left < 2*time.Minute
	}
	if a.CallID != "" {
		v.CallLink = "/ui/transcripts/calls/" + url.PathEscape(a.CallID) + "?approval=" + url.QueryEscape(a.ID)
	}
	return v
}

func decidedBy(a approval.Approval, s *session) bool {
	for _, d := range a.Decisions {
		if d.Approver.Subject == s.Subject && d.Approver.Issuer == s.Issuer {
			return true
		}
	}
	return false
}

var approvalStates = []approval.State{approval.Pending, approval.Approved, approval.Denied, approval.Expired, approval.Consumed}

// approvalsPage lists the approvals the viewer requested or may decide,
// pending first.
func (h *Handler) approvalsPage(w http.ResponseWriter, r *http.Request, s *session) {
	state := approval.State(r.URL.Query().Get("state"))
	if state != "" && !stateKnown(state) {
		h.errorPage(w, r, s, http.StatusBadRequest, "Bad request", "Unknown state "+string(state)+".")
		return
	}
	id := s.Identity()
	list, err := h.cfg.Approvals.List(r.Context(), approval.ListFilter{Viewer: &id, State: state, Limit: 200})
	if err != nil {
		h.cfg.Logger.Error("web: listing approvals", keyError, err)
		h.errorPage(w, r, s, http.StatusInternalServerError, "Error", "The approvals could not be listed.")
		return
	}
	var open, closed []approvalView
	for _, a := range list {
		v := h.viewApproval(a, s)
		if v.Open {
			open = append(open, v)
		} else {
			closed = append(closed, v)
		}
	}
	h.render(w, r, s, http.StatusOK, "approvals", "Approvals", map[string]any{
		"Open": open, "Closed": closed, "State": string(state), "States": approvalStates, "CSRF": s.CSRF,
	})
}

func stateKnown(s approval.State) bool {
	for _, k := range approvalStates {
		if k == s {
			return true
		}
	}
	return false
}

// approvalPage shows one approval to its requester or an approver.
func (h *Handler) approvalPage(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := h.cfg.Approvals.Status(r.Context(), r.PathValue("id"), s.Identity())
	if err != nil {
		h.approvalError(w, r, s, err)
		return
	}
	h.showApproval(w, r, s, http.StatusOK, a, r.URL.Query().Get("decided"), "")
}

func (h *Handler) showApproval(w http.ResponseWriter, r *http.Request, s *session, status int, a approval.Approval, done, errMsg string) {
	h.render(w, r, s, status, "approval", "Approval "+short(a.ID, 8), map[string]any{
		"A": h.viewApproval(a, s), "CSRF": s.CSRF, "Done": done, "Error": errMsg,
	})
}

// decide records the viewer's verdict through the approvals manager, so the
// same rules apply as everywhere: approver groups, never the requester,
// each approver once, only pending and unexpired approvals.
func (h *Handler) decide(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	v := approval.Verdict(r.PostForm.Get("verdict"))
	reason := r.PostForm.Get("reason")
	a, err := h.cfg.Approvals.Decide(r.Context(), id, s.Identity(), v, reason, approval.ViaWeb)
	if err != nil {
		h.cfg.Logger.Info("web: decision refused", keyApproval, id, keySubject, s.Subject, keyError, err)
		if a.ID == "" || !a.MaySee(s.Identity()) {
			h.approvalError(w, r, s, err)
			return
		}
		h.showApproval(w, r, s, statusOf(err), a, "", sentence(err))
		return
	}
	http.Redirect(w, r, "/ui/approvals/"+url.PathEscape(a.ID)+"?decided="+url.QueryEscape(string(v)), http.StatusSeeOther)
}

func (h *Handler) approvalError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status := statusOf(err)
	if status == http.StatusInternalServerError {
		h.cfg.Logger.Error("web: approval", keyError, err)
		h.errorPage(w, r, s, status, "Error", "Something went wrong; the approval could not be read.")
		return
	}
	title := map[int]string{http.StatusNotFound: "Not found", http.StatusForbidden: "Not allowed"}[status]
	if title == "" {
		title = "Refused"
	}
	h.errorPage(w, r, s, status, title, sentence(err))
}

// statusOf maps an approvals error to an HTTP status.
func statusOf(err error) int {
	for _, e := range []struct {
		err    error
		status int
	}{
		{approval.ErrInvalid, http.StatusBadRequest},
		{approval.ErrNotFound, http.StatusNotFound},
		{approval.ErrForbidden, http.StatusForbidden},
		{approval.ErrSelfApproval, http.StatusForbidden},
		{approval.ErrNotApprover, http.StatusForbidden},
		{approval.ErrAlreadyDecided, http.StatusConflict},
		{approval.ErrExpired, http.StatusConflict},
		{approval.ErrConsumed, http.StatusConflict},
		{approval.ErrDenied, http.StatusConflict},
		{approval.ErrApproved, http.StatusConflict},
	} {
		if errors.Is(err, e.err) {
			return e.status
		}
	}
	return http.StatusInternalServerError
}

// sentence turns an approvals error into a sentence for the page: the
// sentinel's message, which is written for people, with its detail.
func sentence(err error) string {
	msg := err.Error()
	if msg == "" {
		return msg
	}
	b := []byte(msg)
	if b[0] >= 'a' && b[0] <= 'z' {
		b[0] -= 'a' - 'A'
	}
	if c := b[len(b)-1]; c != '.' && c != ')' {
		b = append(b, '.')
	} else if c == ')' {
		b = append(b, '.')
	}
	return string(b)
}
