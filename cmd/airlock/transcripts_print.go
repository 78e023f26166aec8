package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlock-mcp/airlock/recorder"
)

// callView is what people read about one call: who, what, the decision,
// how it ended, gathered from its events (which are already masked).
type callView struct {
	id, subject, tool, resource string
	effect, rule                string
	outcome                     string // completed, denied, refused, invalid, failed, pending, unfinished
	reason                      string // why, for every outcome but completed
	statement                   string // the SQL or command
	rest                        []string
	start, end                  time.Time
}

// viewCall reads a call's events in order.
func viewCall(events []recorder.Event) callView {
	v := callView{outcome: "unfinished", reason: "no final event: the call is running, or airlock stopped before it ended"}
	for i, ev := range events {
		if i == 0 {
			v.id, v.subject, v.start = ev.CallID, ev.Subject, ev.Time
		}
		v.end = ev.Time
		if ev.Tool != "" {
			v.tool = ev.Tool
		}
		if ev.Resource != "" {
			v.resource = ev.Resource
		}
		var data map[string]any
		dec := json.NewDecoder(bytes.NewReader(ev.Data))
		dec.UseNumber()
		_ = dec.Decode(&data)
		str := func(k string) string { s, _ := data[k].(string); return s }
		switch ev.Type {
		case recorder.TypeCallReceived:
			if raw, err := json.Marshal(data["arguments"]); err == nil {
				v.statement, v.rest = callArguments(raw)
			}
		case recorder.TypeCallDecided:
			v.effect = ev.Effect
			if d, ok := data["decision"].(map[string]any); ok {
				v.rule, _ = d["rule"].(string)
			}
		case recorder.TypeCallCompleted:
			v.outcome, v.reason = "completed", ""
		case "call.refused":
			// outcome is denied, refused (before policy), invalid, or
			// pending (held for approval; the reason names it).
			v.outcome, v.reason = str("outcome"), str("reason")
			if v.outcome == "" {
				v.outcome = "refused"
			}
		case recorder.TypeCallFailed:
			v.outcome, v.reason = "failed", str("error")
			if s := str("stage"); s != "" {
				v.reason = s + ": " + v.reason
			}
		case recorder.TypeCallInterrupted:
			// The replica running it stopped (a crash); another ended it.
			v.outcome, v.reason = "interrupted", str("reason")
		}
	}
	return v
}

// writeCallList prints calls as a table, newest first, with the outcome in
// words and the statement or command shortened.
func writeCallList(out io.Writer, calls []callView) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tCALL\tSUBJECT\tTOOL\tRESOURCE\tEFFECT\tOUTCOME\tCALL TEXT")
	for _, c := range calls {
		text := c.statement
		if text == "" {
			text = strings.Join(c.rest, " ")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.start.Local().Format(time.DateTime), c.id, c.subject, dash(c.tool), dash(c.resource), dash(c.effect), c.outcome, oneLine(text, statementWidth))
	}
	return w.Flush()
}

// writeCall prints one call for people: a summary, the statement, then
// every event with its time from the first.
func writeCall(out io.Writer, events []recorder.Event) error {
	v := viewCall(events)
	var b strings.Builder
	fmt.Fprintf(&b, "Call %s: %s", v.id, v.outcome)
	if v.reason != "" {
		fmt.Fprintf(&b, " (%s)", v.reason)
	}
	b.WriteString("\n\n")
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Tool\t%s on %s\n", dash(v.tool), dash(v.resource))
	fmt.Fprintf(w, "By\t%s\n", dash(v.subject))
	fmt.Fprintf(w, "Started\t%s\n", v.start.Local().Format(time.DateTime))
	fmt.Fprintf(w, "Took\t%s\n", humanDuration(v.end.Sub(v.start)))
	decision := dash(v.effect)
	if v.rule != "" {
		decision += " by rule " + v.rule
	}
	fmt.Fprintf(w, "Decision\t%s\n", decision)
	w.Flush()
	if v.statement != "" {
		label := "SQL"
		if v.tool == "run_ssh" {
			label = "Command"
		}
		fmt.Fprintf(&b, "\n%s:\n", label)
		for _, line := range strings.Split(strings.TrimRight(v.statement, "\n"), "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	if len(v.rest) > 0 {
		b.WriteString("\nArguments:\n")
		for _, r := range v.rest {
			b.WriteString("    " + r + "\n")
		}
	}
	b.WriteString("\nEvents:\n")
	w = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	for _, ev := range events {
		fmt.Fprintf(w, "    #%d\t+%s\t%s\t%s\n", ev.Seq, humanDuration(ev.Time.Sub(v.start)), ev.Type, eventDetail(ev, v.subject))
	}
	w.Flush()
	b.WriteString("\n(--json prints every event's data.)\n")
	// tabwriter pads an empty last cell: drop the trailing blanks.
	text := b.String()
	for strings.Contains(text, " \n") {
		text = strings.ReplaceAll(text, " \n", "\n")
	}
	_, err := io.WriteString(out, text)
	return err
}

// eventDetail is one short line about an event's data, naming its
// subject when it is not the caller (an approver).
func eventDetail(ev recorder.Event, caller string) string {
	var data map[string]any
	dec := json.NewDecoder(bytes.NewReader(ev.Data))
	dec.UseNumber()
	if dec.Decode(&data) != nil {
		return ""
	}
	var parts []string
	add := func(k string) {
		switch x := data[k].(type) {
		case nil:
		case string:
			if x != "" {
				parts = append(parts, k+"="+oneLine(x, 80))
			}
		case map[string]any, []any:
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", k, x))
		}
	}
	for _, k := range []string{"effect", "outcome", "state", "approval_id", "verdict", "stage", "rows", "row_count", "bytes", "duration_ms", "reason", "error"} {
		add(k)
	}
	if d, ok := data["decision"].(map[string]any); ok {
		for _, k := range []string{"effect", "rule"} {
			if s, ok := d[k].(string); ok && s != "" {
				parts = append(parts, k+"="+s)
			}
		}
	}
	if ev.Subject != "" && ev.Subject != caller {
		parts = append(parts, "by="+ev.Subject)
	}
	return strings.Join(parts, " ")
}
