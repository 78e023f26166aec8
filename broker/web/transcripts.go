package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
)

// Limits of the transcript pages.
const (
	maxCallsShown  = 100  // calls on the transcripts page
	maxCallsExport = 5000 // calls in a filtered export
	maxRowsShown   = 100  // result rows on a call page
)

// Who reads which transcript:
//   - members of Config.ReviewersGroup read every call and export the
//     whole chain;
//   - everyone else reads the calls they made (subject and issuer of the
//     call.received event), and a call whose approval they requested or may
//     decide (reached from the approval's page).
func (h *Handler) isReviewer(s *session) bool {
	return h.cfg.ReviewersGroup != "" && contains(s.Groups, h.cfg.ReviewersGroup)
}

// callFilter is the transcripts page's query, shared with the export.
type callFilter struct {
	Subject, Tool, Resource, Effect, Session string
	Since, Until                             string // as typed (datetime-local, date or RFC 3339), UTC
}

func (f callFilter) empty() bool { return f == callFilter{} }

// Query is the filter as a query string, for links (export, pages).
func (f callFilter) Query() string {
	q := url.Values{}
	for k, v := range map[string]string{
		"subject": f.Subject, "tool": f.Tool, "resource": f.Resource, "effect": f.Effect,
		"session": f.Session, "since": f.Since, "until": f.Until,
	} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

func parseFilter(r *http.Request) (callFilter, recorder.Filter, error) {
	q := r.URL.Query()
	f := callFilter{
		Subject: strings.TrimSpace(q.Get("subject")), Tool: strings.TrimSpace(q.Get("tool")),
		Resource: strings.TrimSpace(q.Get("resource")), Effect: q.Get("effect"),
		Session: strings.TrimSpace(q.Get("session")), Since: q.Get("since"), Until: q.Get("until"),
	}
	rf := recorder.Filter{Subject: f.Subject, Tool: f.Tool, Resource: f.Resource, Effect: f.Effect, SessionID: f.Session}
	switch policy.Effect(f.Effect) {
	case "", policy.Allow, policy.Deny, policy.Approve:
	default:
		return f, rf, fmt.Errorf("unknown effect %q (allow, deny or approve)", f.Effect)
	}
	var err error
	if rf.Since, err = parseTime(f.Since); err != nil {
		return f, rf, fmt.Errorf("since: %w", err)
	}
	if rf.Until, err = parseTime(f.Until); err != nil {
		return f, rf, fmt.Errorf("until: %w", err)
	}
	return f, rf, nil
}

// parseTime reads a datetime-local value, a date or RFC 3339, in UTC.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (YYYY-MM-DD, YYYY-MM-DDTHH:MM or RFC 3339)", s)
}

// visibleCalls returns the calls f selects that s may read, newest first.
func (h *Handler) visibleCalls(ctx context.Context, s *session, f recorder.Filter, limit int) ([]recorder.CallSummary, error) {
	if h.isReviewer(s) {
		f.Limit = limit
		return h.cfg.Recorder.Calls(ctx, f)
	}
	f.Subject = s.Subject
	f.Limit = limit
	calls, err := h.cfg.Recorder.Calls(ctx, f)
	if err != nil || len(calls) == 0 {
		return calls, err
	}
	// The subject filter matches any event of a call with that subject (an
	// approval decided by the viewer, say): keep the calls the viewer made,
	// under the same issuer.
	oldest := calls[len(calls)-1].Time
	received, err := h.cfg.Recorder.Events(ctx, recorder.Filter{Subject: s.Subject, Type: recorder.TypeCallReceived, Since: oldest})
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, ev := range received {
		if ev.Issuer == s.Issuer {
			own[ev.CallID] = true
		}
	}
	out := calls[:0]
	for _, c := range calls {
		if own[c.CallID] {
			out = append(out, c)
		}
	}
	return out, nil
}

// sessionGroup is consecutive calls of one MCP session.
type sessionGroup struct {
	SessionID string
	Subject   string
	Start     time.Time
	End       time.Time
	Calls     []recorder.CallSummary
}

func groupSessions(calls []recorder.CallSummary) []sessionGroup {
	var out []sessionGroup
	for _, c := range calls {
		if n := len(out); n > 0 && out[n-1].SessionID == c.SessionID && out[n-1].Subject == c.Subject {
			g := &out[n-1]
			g.Calls = append(g.Calls, c)
			g.Start = c.Time
			continue
		}
		out = append(out, sessionGroup{SessionID: c.SessionID, Subject: c.Subject, Start: c.Time, End: c.Time.Add(c.Duration), Calls: []recorder.CallSummary{c}})
	}
	return out
}

// chainBadge is the hash chain's verification, for the badge.
type chainBadge struct {
	OK     bool
	Count  int64
	Detail string
}

func (h *Handler) chain(ctx context.Context) chainBadge {
	rep, err := h.verify(ctx)
	switch {
	case err != nil:
		h.cfg.Logger.Error("web: verifying the transcript chain", keyError, err)
		return chainBadge{Detail: "the chain could not be verified"}
	case !rep.OK:
		return chainBadge{Count: rep.Count, Detail: fmt.Sprintf("broken at event %d (%s)", rep.BadSeq, rep.Reason)}
	}
	return chainBadge{OK: true, Count: rep.Count}
}

func (h *Handler) transcriptsPage(w http.ResponseWriter, r *http.Request, s *session) {
	f, rf, err := parseFilter(r)
	if err != nil {
		h.errorPage(w, r, s, http.StatusBadRequest, "Bad filter", sentence(err))
		return
	}
	reviewer := h.isReviewer(s)
	if !reviewer {
		f.Subject = ""
	}
	calls, err := h.visibleCalls(r.Context(), s, rf, maxCallsShown)
	if err != nil {
		h.cfg.Logger.Error("web: listing calls", keyError, err)
		h.errorPage(w, r, s, http.StatusInternalServerError, "Error", "The transcript could not be read.")
		return
	}
	h.render(w, r, s, http.StatusOK, "transcripts", "Transcripts", map[string]any{
		"F": f, "Reviewer": reviewer, "Sessions": groupSessions(calls), "Count": len(calls),
		"Capped": len(calls) == maxCallsShown, "Chain": h.chain(r.Context()),
		"Effects": []policy.Effect{policy.Allow, policy.Approve, policy.Deny},
	})
}

// export downloads the selected transcript as JSON lines. A reviewer with
// no filter gets the complete chain (checkable with
// recorder.VerifyJSONL); otherwise every event of each
// selected call, oldest call first.
func (h *Handler) export(w http.ResponseWriter, r *http.Request, s *session) {
	f, rf, err := parseFilter(r)
	if err != nil {
		h.errorPage(w, r, s, http.StatusBadRequest, "Bad filter", sentence(err))
		return
	}
	name := "airlock-transcript-" + h.cfg.Clock().UTC().Format("20060102T150405Z") + ".jsonl"
	w.Header().Set("Content-Type", "application/x-ndjson; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	w.Header().Set("Cache-Control", "no-store")
	if h.isReviewer(s) && f.empty() {
		if err := h.cfg.Recorder.Export(r.Context(), w, recorder.Filter{}); err != nil {
			h.cfg.Logger.Error("web: export", keyError, err)
		}
		return
	}
	calls, err := h.visibleCalls(r.Context(), s, rf, maxCallsExport)
	if err != nil {
		h.cfg.Logger.Error("web: export", keyError, err)
		http.Error(w, "the transcript could not be read", http.StatusInternalServerError)
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := len(calls) - 1; i >= 0; i-- {
		evs, err := h.cfg.Recorder.Events(r.Context(), recorder.Filter{CallID: calls[i].CallID})
		if err != nil {
			h.cfg.Logger.Error("web: export", keyCall, calls[i].CallID, keyError, err)
			return
		}
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				return
			}
		}
	}
	h.cfg.Logger.Info("web: transcript exported", keySubject, s.Subject, "calls", len(calls))
}

// callPage shows one call's events as a timeline.
func (h *Handler) callPage(w http.ResponseWriter, r *http.Request, s *session) {
	callID := r.PathValue("call_id")
	evs, err := h.cfg.Recorder.Events(r.Context(), recorder.Filter{CallID: callID})
	if err != nil {
		h.cfg.Logger.Error("web: reading call", keyCall, callID, keyError, err)
		h.errorPage(w, r, s, http.StatusInternalServerError, "Error", "The transcript could not be read.")
		return
	}
	if len(evs) == 0 {
		h.errorPage(w, r, s, http.StatusNotFound, "Not found", "The transcript has no call "+callID+".")
		return
	}
	if !h.mayReadCall(r.Context(), s, callID, evs, r.URL.Query().Get("approval")) {
		h.errorPage(w, r, s, http.StatusForbidden, "Not allowed", "This call was made by someone else, and you neither requested nor may decide an approval for it.")
		return
	}
	cv := buildCall(callID, evs)
	h.render(w, r, s, http.StatusOK, "call", "Call "+short(callID, 8), map[string]any{
		"C": cv, "Chain": h.chain(r.Context()),
	})
}

// requesterOf is who made the call: the subject and issuer of its
// call.received event (else the first event that names one).
func requesterOf(evs []recorder.Event) (subject, issuer string) {
	for _, ev := range evs {
		if ev.Type == recorder.TypeCallReceived {
			return ev.Subject, ev.Issuer
		}
	}
	for _, ev := range evs {
		if ev.Subject != "" {
			return ev.Subject, ev.Issuer
		}
	}
	return "", ""
}

func (h *Handler) mayReadCall(ctx context.Context, s *session, callID string, evs []recorder.Event, approvalID string) bool {
	if h.isReviewer(s) {
		return true
	}
	if sub, iss := requesterOf(evs); sub == s.Subject && iss == s.Issuer {
		return true
	}
	// An approval for this call that the viewer requested or may decide.
	ids := approvalIDs(evs)
	if approvalID != "" {
		ids = append(ids, approvalID)
	}
	for _, id := range ids {
		a, err := h.cfg.Approvals.Get(ctx, id)
		if err != nil {
			continue
		}
		if (a.CallID == callID || a.ConsumedBy == callID) && a.MaySee(s.Identity()) {
			return true
		}
	}
	return false
}

// approvalIDs finds approval ids in a call's events: data.approval_id or
// data.approval.id.
func approvalIDs(evs []recorder.Event) []string {
	var ids []string
	for _, ev := range evs {
		if !strings.HasPrefix(ev.Type, "approval.") {
			continue
		}
		var d struct {
			ApprovalID string `json:"approval_id"`
			Approval   struct {
				ID string `json:"id"`
			} `json:"approval"`
		}
		if json.Unmarshal(ev.Data, &d) != nil {
			continue
		}
		for _, id := range []string{d.ApprovalID, d.Approval.ID} {
			if id != "" && !contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// callView is one call for the call page.
type callView struct {
	ID, SessionID, Subject, Issuer string
	Tool, Resource, Effect         string
	Outcome                        string
	Start, End                     time.Time
	Duration                       time.Duration
	Decision                       *policy.Decision
	Approvals                      []string // approval ids
	Leases                         []leaseView
	Events                         []eventView
}

type leaseView struct {
	ID, Grant, Kind, State, Event string
	Expires                       time.Time
}

// eventView is one timeline entry.
type eventView struct {
	Seq        int64
	Time       time.Time
	Offset     time.Duration // since the call's first event
	Type       string
	Class      string // ok | deny | approve | fail | info
	Title      string
	Hash       string
	Args       *argsView
	Decision   *policy.Decision
	Fields     []kv
	Table      *tableView
	Pre        []kv // labelled preformatted blocks (stdout, preview, facts)
	ApprovalID string
}

type tableView struct {
	Columns []string
	Rows    [][]string
	More    int // rows not shown
}

func buildCall(callID string, evs []recorder.Event) callView {
	c := callView{ID: callID, Start: evs[0].Time, End: evs[len(evs)-1].Time}
	c.Duration = c.End.Sub(c.Start)
	c.Subject, c.Issuer = requesterOf(evs)
	c.Outcome = evs[len(evs)-1].Type
	for _, ev := range evs {
		if c.SessionID == "" {
			c.SessionID = ev.SessionID
		}
		if c.Tool == "" {
			c.Tool = ev.Tool
		}
		if c.Resource == "" {
			c.Resource = ev.Resource
		}
		if c.Effect == "" {
			c.Effect = ev.Effect
		}
		v := eventView{Seq: ev.Seq, Time: ev.Time, Offset: ev.Time.Sub(c.Start), Type: ev.Type, Class: "info", Title: ev.Type, Hash: short(ev.Hash, 12)}
		data := decodeData(ev.Data)
		switch {
		case ev.Type == recorder.TypeCallReceived:
			v.Title = "Call received"
			raw, _ := json.Marshal(data["arguments"])
			a := viewArgs(raw)
			v.Args = &a
			v.Fields = []kv{{"subject", ev.Subject}, {"issuer", ev.Issuer}, {"session", ev.SessionID}}
		case ev.Type == recorder.TypeCallDecided:
			var d struct {
				Decision policy.Decision `json:"decision"`
				Facts    json.RawMessage `json:"facts"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			v.Decision = &d.Decision
			c.Decision = &d.Decision
			v.Title = "Policy decided: " + string(d.Decision.Effect)
			v.Class = effectClass(string(d.Decision.Effect))
			if len(d.Facts) > 0 && string(d.Facts) != "null" {
				v.Pre = append(v.Pre, kv{"facts", prettyJSON(d.Facts)})
			}
		case strings.HasPrefix(ev.Type, "approval."):
			v.Title = approvalTitle(ev.Type, data)
			v.Class = "approve"
			if verdict, _ := data["verdict"].(string); verdict == string(approval.Deny) || ev.Type == "approval.refused" {
				v.Class = "deny"
			}
			v.Fields = scalarFields(data, "approval_id")
			if ev.Subject != "" && ev.Type != recorder.TypeApprovalRequested {
				v.Fields = append([]kv{{"by", ev.Subject}}, v.Fields...)
			}
			for _, id := range approvalIDs([]recorder.Event{ev}) {
				v.ApprovalID = id
				if !contains(c.Approvals, id) {
					c.Approvals = append(c.Approvals, id)
				}
			}
		case strings.HasPrefix(ev.Type, "lease."):
			v.Title = map[string]string{
				recorder.TypeLeaseMinted: "Credential lease minted", recorder.TypeLeaseReused: "Credential lease reused",
				recorder.TypeLeaseRevoked: "Credential lease revoked", recorder.TypeLeaseFailed: "Credential lease failed",
			}[ev.Type]
			if v.Title == "" {
				v.Title = ev.Type
			}
			if ev.Type == recorder.TypeLeaseFailed {
				v.Class = "fail"
			}
			l := leaseView{Event: ev.Type}
			l.ID, _ = data["lease_id"].(string)
			l.Grant, _ = data["grant"].(string)
			l.Kind, _ = data["kind"].(string)
			l.State, _ = data["state"].(string)
			if s, ok := data["expires_at"].(string); ok {
				l.Expires, _ = time.Parse(time.RFC3339Nano, s)
			}
			c.Leases = append(c.Leases, l)
			v.Fields = scalarFields(data)
		case ev.Type == recorder.TypeCallCompleted || ev.Type == recorder.TypeCallExecuted:
			v.Title = "Result returned"
			v.Class = "ok"
			v.Fields = scalarFields(data, "result")
			if m, ok := data["masked"].(map[string]any); ok && len(m) > 0 {
				v.Fields = append(v.Fields, kv{"masked", compactJSON(m)})
			}
			resultView(&v, data["result"])
		case ev.Type == recorder.TypeCallFailed:
			v.Title = "Call failed"
			v.Class = "fail"
			v.Fields = scalarFields(data)
		default:
			v.Fields = scalarFields(data)
			if len(v.Fields) == 0 && len(ev.Data) > 0 {
				v.Pre = append(v.Pre, kv{"data", prettyJSON(ev.Data)})
			}
		}
		c.Events = append(c.Events, v)
	}
	return c
}

func approvalTitle(typ string, data map[string]any) string {
	switch typ {
	case recorder.TypeApprovalRequested:
		return "Approval requested"
	case recorder.TypeApprovalDecided:
		if v, ok := data["verdict"].(string); ok {
			return "Approval decided: " + v
		}
		return "Approval decided"
	case "approval.consumed":
		return "Approval used by this call"
	case "approval.refused":
		return "Decision refused"
	case "approval.withdrawn":
		return "Approval withdrawn by the requester"
	}
	return typ
}

func effectClass(effect string) string {
	switch policy.Effect(effect) {
	case policy.Allow:
		return "ok"
	case policy.Deny:
		return "deny"
	case policy.Approve:
		return "approve"
	}
	return "info"
}

func decodeData(raw json.RawMessage) map[string]any {
	m := map[string]any{}
	if len(raw) == 0 {
		return m
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	_ = dec.Decode(&m)
	return m
}

// scalarFields lists data's fields, sorted, objects and arrays as compact
// JSON; skip names fields shown otherwise.
func scalarFields(data map[string]any, skip ...string) []kv {
	keys := make([]string, 0, len(data))
	for k := range data {
		if !contains(skip, k) && k != "masked" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]kv, 0, len(keys))
	for _, k := range keys {
		switch v := data[k].(type) {
		case map[string]any, []any:
			out = append(out, kv{k, short(compactJSON(v), 300)})
		default:
			out = append(out, kv{k, cellText(v)})
		}
	}
	return out
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// resultView renders a (masked, capped) result: a table when it has
// columns and rows, stdout/stderr blocks for commands, the preview of a
// capped result, else the JSON.
func resultView(v *eventView, result any) {
	m, ok := result.(map[string]any)
	if !ok {
		if result != nil {
			v.Pre = append(v.Pre, kv{"result", prettyJSON(result)})
		}
		return
	}
	if t, _ := m["truncated"].(bool); t {
		if p, ok := m["preview"].(string); ok {
			v.Pre = append(v.Pre, kv{"result (capped in the transcript; first part)", p})
			return
		}
	}
	cols, hasCols := m["columns"].([]any)
	rows, hasRows := m["rows"].([]any)
	if hasCols && hasRows && len(cols) > 0 {
		t := &tableView{}
		for _, c := range cols {
			switch x := c.(type) {
			case map[string]any:
				n, _ := x["name"].(string)
				t.Columns = append(t.Columns, n)
			default:
				t.Columns = append(t.Columns, cellText(x))
			}
		}
		for i, r := range rows {
			if i == maxRowsShown {
				t.More = len(rows) - i
				break
			}
			cells, _ := r.([]any)
			line := make([]string, len(t.Columns))
			for j := range line {
				if j < len(cells) {
					line[j] = short(cellText(cells[j]), 200)
				}
			}
			t.Rows = append(t.Rows, line)
		}
		v.Table = t
		for _, k := range []string{"tag", "notice"} {
			if s, ok := m[k].(string); ok && s != "" {
				v.Fields = append(v.Fields, kv{k, s})
			}
		}
		return
	}
	shown := false
	for _, k := range []string{"stdout", "stderr"} {
		if s, ok := m[k].(string); ok && s != "" {
			v.Pre = append(v.Pre, kv{k, s})
			shown = true
		}
	}
	if shown {
		for _, k := range []string{"exit_code", "exit_status", "signal"} {
			if x, ok := m[k]; ok {
				v.Fields = append(v.Fields, kv{k, cellText(x)})
			}
		}
		return
	}
	v.Pre = append(v.Pre, kv{"result", prettyJSON(m)})
}
