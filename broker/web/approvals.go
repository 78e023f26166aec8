package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
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
	Withdrawn bool   // denied by its requester's withdrawal (MCP tasks/cancel)
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
		Withdrawn: a.Withdrawn(),
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

// StateLabel is the state the pages show: a withdrawn approval is stored as
// denied (by its requester), but nobody denied it, so it reads "withdrawn".
func (v approvalView) StateLabel() string {
	if v.Withdrawn {
		return approval.ViaWithdrawn
	}
	return string(v.State)
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
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	id := s.Identity()
	list, err := h.cfg.Approvals.List(r.Context(), approval.ListFilter{Viewer: &id, State: state, Limit: maxApprovalsListed})
	if err != nil {
		h.cfg.Logger.Error("web: listing approvals", keyError, err)
		h.errorPage(w, r, s, http.StatusInternalServerError, "Error", "The approvals could not be listed.")
		return
	}
	// Pending first (List's order), then the most recent; the search and
	// the pages are over that list.
	var matched []approvalView
	for _, a := range list {
		v := h.viewApproval(a, s)
		if q == "" || v.matches(q) {
			matched = append(matched, v)
		}
	}
	pages := max(1, (len(matched)+approvalsPerPage-1)/approvalsPerPage)
	page = min(page, pages)
	shown := matched[(page-1)*approvalsPerPage : min(len(matched), page*approvalsPerPage)]
	var open, closed []approvalView
	for _, v := range shown {
		if v.Open {
			open = append(open, v)
		} else {
			closed = append(closed, v)
		}
	}
	link := func(p int) string {
		v := url.Values{}
		if state != "" {
			v.Set("state", string(state))
		}
		if q != "" {
			v.Set("q", q)
		}
		if p > 1 {
			v.Set("page", strconv.Itoa(p))
		}
		if len(v) == 0 {
			return "/ui/approvals"
		}
		return "/ui/approvals?" + v.Encode()
	}
	d := map[string]any{
		"Open": open, "Closed": closed, "State": string(state), "States": approvalStates, "CSRF": s.CSRF,
		"Q": q, "Total": len(matched), "Page": page, "Pages": pages, "Capped": len(list) == maxApprovalsListed,
		"Empty": len(list) == 0,
	}
	if page > 1 {
		d["Prev"] = link(page - 1)
	}
	if page < pages {
		d["Next"] = link(page + 1)
	}
	h.render(w, r, s, http.StatusOK, "approvals", "Approvals", d)
}

// Limits of the approvals page.
const (
	approvalsPerPage   = 20
	maxApprovalsListed = 1000 // read from the store, then searched and paged
)

// matches reports whether the approval's SQL or command (or its tool,
// resource, requester or rule) contains q, ignoring case.
func (v approvalView) matches(q string) bool {
	q = strings.ToLower(q)
	for _, s := range []string{v.Args.SQL, v.Args.Command, v.Tool, v.Resource, v.Requester.Subject, v.Requester.Email, v.Rule, v.ID} {
		if strings.Contains(strings.ToLower(s), q) {
			return true
		}
	}
	return false
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
		"A": h.viewApproval(a, s), "CSRF": s.CSRF, "Done": done, "Error": errMsg, "Impact": h.impact(r.Context(), a),
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
		h.showApproval(w, r, s, approval.HTTPStatus(err), a, "", sentence(err))
		return
	}
	http.Redirect(w, r, "/ui/approvals/"+url.PathEscape(a.ID)+"?decided="+url.QueryEscape(string(v)), http.StatusSeeOther)
}

func (h *Handler) approvalError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	status := approval.HTTPStatus(err)
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
