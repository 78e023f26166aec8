package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/broker/approval"
)

// statementWidth is how much of a statement or command a list shows.
const statementWidth = 60

// callArguments splits a call's (masked) arguments into its statement, the
// SQL or shell command, and the rest as name=value, numbers kept exactly as
// they were sent.
func callArguments(raw json.RawMessage) (statement string, rest []string) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		return "", []string{string(raw)}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if s, ok := v.(string); ok && (k == "sql" || k == "command") && statement == "" {
			statement = s
			continue
		}
		if k == "resource" {
			continue
		}
		b, _ := json.Marshal(v)
		rest = append(rest, k+"="+string(b))
	}
	return statement, rest
}

// oneLine shortens s to at most n characters on one line, marking a cut
// with "…".
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// humanDuration prints a duration for people: 10s, 4m30s, 2h0m0s, rounded
// to the second (to the millisecond under a second).
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// writeApprovalList prints approvals as a table, pending first as the
// store orders them, with the statement or command shortened.
func writeApprovalList(out io.Writer, list []approval.Approval, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTATE\tREQUESTER\tTOOL\tRESOURCE\tRULE\tEXPIRES\tCALL")
	for _, a := range list {
		statement, rest := callArguments(a.Arguments)
		if statement == "" {
			statement = strings.Join(rest, " ")
		}
		expires := "-"
		if a.State == approval.Pending || a.State == approval.Approved {
			expires = "in " + humanDuration(a.ExpiresAt.Sub(now))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.Requester.Subject, a.Tool, a.Resource, a.Rule, expires, oneLine(statement, statementWidth))
	}
	return w.Flush()
}

// writeApproval prints one approval for people: the call, who asked, the
// rule and approvers, where it stands, and every decision with who made it.
func writeApproval(out io.Writer, a approval.Approval, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Approval %s: %s", a.ID, a.State)
	min := max(a.Approvers.Min, 1)
	switch a.State {
	case approval.Pending:
		fmt.Fprintf(&b, " (%d of %d approvals, expires in %s)", a.Approvals(), min, humanDuration(a.ExpiresAt.Sub(now)))
	case approval.Approved:
		fmt.Fprintf(&b, " (not used yet, expires in %s)", humanDuration(a.ExpiresAt.Sub(now)))
	case approval.Expired:
		fmt.Fprintf(&b, " (%s ago)", humanDuration(now.Sub(a.ExpiresAt)))
	}
	b.WriteString("\n\n")

	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	requester := a.Requester.Subject
	if a.Requester.Email != "" && a.Requester.Email != a.Requester.Subject {
		requester += " <" + a.Requester.Email + ">"
	}
	fmt.Fprintf(w, "Call\t%s on %s\n", a.Tool, a.Resource)
	fmt.Fprintf(w, "Requested by\t%s, %s ago (call %s)\n", requester, humanDuration(now.Sub(a.CreatedAt)), a.CallID)
	fmt.Fprintf(w, "Rule\t%s\n", a.Rule)
	fmt.Fprintf(w, "Approvers\t%s (%d needed)\n", strings.Join(a.Approvers.Groups, " or "), min)
	if a.State == approval.Consumed {
		fmt.Fprintf(w, "Used by\tcall %s, %s after it was decided\n", a.ConsumedBy, humanDuration(a.ConsumedAt.Sub(a.DecidedAt)))
	}
	if a.URL != "" {
		fmt.Fprintf(w, "Page\t%s\n", a.URL)
	}
	w.Flush()

	statement, rest := callArguments(a.Arguments)
	if statement != "" {
		label := "SQL"
		if a.Tool == "run_ssh" {
			label = "Command"
		}
		fmt.Fprintf(&b, "\n%s:\n", label)
		for _, line := range strings.Split(strings.TrimRight(statement, "\n"), "\n") {
			b.WriteString("    " + line + "\n")
		}
	}
	if len(rest) > 0 {
		b.WriteString("\nArguments:\n")
		for _, r := range rest {
			b.WriteString("    " + r + "\n")
		}
	}

	b.WriteString("\nDecisions:\n")
	if len(a.Decisions) == 0 {
		b.WriteString("    none yet\n")
	}
	for _, d := range a.Decisions {
		fmt.Fprintf(&b, "    %s by %s via %s, %s after the request", d.Verdict, d.Approver.Subject, d.Via, humanDuration(d.At.Sub(a.CreatedAt)))
		if d.Reason != "" {
			fmt.Fprintf(&b, ": %q", d.Reason)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(out, b.String())
	return err
}
