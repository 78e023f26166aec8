package web

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/recorder"
	"github.com/airlock-mcp/airlock/tools"
)

// What an approver sees of a held call's effect, on the approval page, all
// from the transcript of the call that asked:
//   - for query_db writes, the broker's impact preview (call.previewed:
//     EXPLAIN under the grant's role, estimated rows and tables), or why
//     there is none;
//   - for run_ssh, the commands the shell parser found (call.decided's
//     facts), one per line, with sudo and file writes marked;
//   - the requester's recent calls on the same resource.

// typeCallPreviewed is the broker's impact preview event (broker.TypeCallPreviewed).
const typeCallPreviewed = "call.previewed"

// recentCallsShown is how many of the requester's recent calls on the
// resource the approval page lists.
const recentCallsShown = 8

// manyRows is the estimate from which the page marks a write as large.
const manyRows = 100

type impactView struct {
	Preview     *tools.Impact
	Unavailable string
	Many        bool // the estimate is manyRows or more
	// run_ssh
	Commands    []commandView
	WritesFiles []string
	UsesSudo    bool
	Shell       bool
	// KindFacts are the facts of a kind registered with policy.RegisterFacts
	// (http_request), as policy read them.
	KindFacts *kindFactsView
	// Recent are the requester's latest other calls on the resource.
	Recent    []recentCall
	RecentErr bool
}

type commandView struct {
	Text   string
	Sudo   bool
	Writes []string // files this command writes
}

type recentCall struct {
	CallID  string
	Time    string
	Tool    string
	Effect  string
	Outcome string
	Text    string // the SQL or command, shortened
}

// impact reads what the transcript says about a's call.
func (h *Handler) impact(ctx context.Context, a approval.Approval) impactView {
	var v impactView
	if a.CallID != "" {
		evs, err := h.cfg.Recorder.Events(ctx, recorder.Filter{CallID: a.CallID})
		if err != nil {
			h.cfg.Logger.Error("web: reading the call of an approval", keyApproval, a.ID, keyError, err)
		}
		for _, ev := range evs {
			switch ev.Type {
			case typeCallPreviewed:
				var d struct {
					Impact      *tools.Impact `json:"impact"`
					Unavailable string        `json:"unavailable"`
				}
				if json.Unmarshal(ev.Data, &d) == nil {
					v.Preview, v.Unavailable = d.Impact, d.Unavailable
					v.Many = d.Impact != nil && d.Impact.EstimatedRows >= manyRows
				}
			case recorder.TypeCallDecided:
				var d struct {
					Facts policy.Facts `json:"facts"`
				}
				if json.Unmarshal(ev.Data, &d) == nil {
					if d.Facts.Shell != nil {
						v.shell(d.Facts.Shell)
					}
					v.KindFacts = viewKindFacts(d.Facts)
				}
			}
		}
	}
	v.Recent, v.RecentErr = h.recentCalls(ctx, a)
	return v
}

func (v *impactView) shell(sh *policy.Shell) {
	v.Shell, v.UsesSudo, v.WritesFiles = true, sh.UsesSudo, sh.WritesFiles
	for _, c := range sh.Commands {
		cv := commandView{Text: strings.TrimSpace(c.Program + " " + strings.Join(quoteArgs(c.Args), " "))}
		cv.Sudo = c.Program == "sudo" || c.Program == "doas" || strings.HasSuffix(c.Program, "/sudo")
		for _, f := range sh.WritesFiles {
			if contains(c.Args, f) {
				cv.Writes = append(cv.Writes, f)
			}
		}
		v.Commands = append(v.Commands, cv)
	}
}

// quoteArgs shows arguments with spaces or quotes in single quotes, so one
// argument reads as one.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}

// recentCalls lists the requester's latest other calls on the approval's
// resource (same subject and issuer), newest first, with their SQL or
// command as recorded (masked).
func (h *Handler) recentCalls(ctx context.Context, a approval.Approval) ([]recentCall, bool) {
	calls, err := h.cfg.Recorder.Calls(ctx, recorder.Filter{Subject: a.Requester.Subject, Resource: a.Resource, Limit: recentCallsShown * 3})
	if err != nil {
		h.cfg.Logger.Error("web: listing recent calls", keyApproval, a.ID, keyError, err)
		return nil, true
	}
	if len(calls) == 0 {
		return nil, false
	}
	received, err := h.cfg.Recorder.Events(ctx, recorder.Filter{Subject: a.Requester.Subject, Type: recorder.TypeCallReceived, Since: calls[len(calls)-1].Time})
	if err != nil {
		h.cfg.Logger.Error("web: listing recent calls", keyApproval, a.ID, keyError, err)
		return nil, true
	}
	args := map[string]argsView{}
	for _, ev := range received {
		if ev.Issuer != a.Requester.Issuer {
			continue
		}
		var d struct {
			Arguments json.RawMessage `json:"arguments"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		args[ev.CallID] = viewArgs(d.Arguments)
	}
	var out []recentCall
	for _, c := range calls {
		av, own := args[c.CallID]
		if !own || c.CallID == a.CallID || c.CallID == a.ConsumedBy {
			continue
		}
		text := av.SQL
		if text == "" {
			text = av.Command
		}
		out = append(out, recentCall{CallID: c.CallID, Time: fmtTime(c.Time), Tool: c.Tool, Effect: c.Effect,
			Outcome: strings.TrimPrefix(c.Outcome, "call."), Text: short(strings.Join(strings.Fields(text), " "), 160)})
		if len(out) == recentCallsShown {
			break
		}
	}
	return out, false
}
