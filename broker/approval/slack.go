package approval

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
)

// Slack incoming-webhook message: https://api.slack.com/messaging/webhooks.
// Everything that comes from the agent or the requester is escaped for
// mrkdwn (&, <, >), so arguments cannot form links or mentions such as
// <!channel>, and cannot close the code block they are shown in.

type slackPayload struct {
	Text   string       `json:"text"` // notification and fallback text
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type   string      `json:"type"`
	Text   *slackText  `json:"text,omitempty"`
	Fields []slackText `json:"fields,omitempty"`
}

type slackText struct {
	Type string `json:"type"` // mrkdwn or plain_text
	Text string `json:"text"`
	// Verbatim (mrkdwn only) stops Slack from turning text into links and
	// mentions on its own (a URL, #channel, @here in an argument): only the
	// <url|text> links airlock writes are links.
	Verbatim bool `json:"verbatim,omitempty"`
}

// slackArgsLimit keeps the arguments block under Slack's 3000-character
// limit for a section's text.
const slackArgsLimit = 2500

func slackMessage(p webhook.Payload) slackPayload {
	a := p.Approval
	who := a.Requester.Subject
	if a.Requester.Email != "" {
		who = a.Requester.Email
	}
	summary := fmt.Sprintf("Approval needed: %s wants to run %s on %s", who, a.Tool, a.Resource)

	var rules []string
	for _, r := range a.Rules {
		line := "• `" + slackEscape(r.Rule) + "` (" + slackEscape(r.Effect) + ")"
		if r.Message != "" {
			line += ": " + slackEscape(r.Message)
		}
		rules = append(rules, line)
	}
	args := slackCode(string(a.Arguments))

	mrk := func(s string) slackText { return slackText{Type: "mrkdwn", Verbatim: true, Text: s} }
	blocks := []slackBlock{
		{Type: "section", Text: &slackText{Type: "mrkdwn", Verbatim: true, Text: "*" + slackEscape(summary) + "*"}},
		{Type: "section", Fields: []slackText{
			mrk("*Requester*\n" + slackEscape(who)),
			mrk("*Approvers*\n" + slackEscape(fmt.Sprintf("%s (%d needed)", strings.Join(a.Approvers.Groups, ", "), a.Approvers.Min))),
			mrk("*Tool*\n" + slackEscape(a.Tool)),
			mrk("*Resource*\n" + slackEscape(a.Resource)),
			mrk("*Expires*\n" + a.ExpiresAt.UTC().Format(time.RFC1123)),
			mrk("*Approval*\n`" + slackEscape(a.ID) + "`"),
		}},
		{Type: "section", Text: &slackText{Type: "mrkdwn", Verbatim: true, Text: "*Arguments* (masked)\n```" + args + "```"}},
	}
	if len(rules) > 0 {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Verbatim: true, Text: "*Rules*\n" + strings.Join(rules, "\n")}})
	}
	if a.Links.Page != "" {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Verbatim: true, Text: "<" + a.Links.Page + "|Review and decide in Airlock>"}})
	}
	return slackPayload{Text: slackEscape(summary), Blocks: blocks}
}

// slackCode renders s for a code block: escaped, no two backticks in a
// row (so no run of them can close the block), and cut after escaping to
// slackArgsLimit characters, at a character and never inside an escape.
func slackCode(s string) string {
	s = slackEscape(s)
	for range 2 { // the first pass leaves runs of at most two, the second none
		s = strings.ReplaceAll(s, "``", "`\u200b`")
	}
	if utf8.RuneCountInString(s) <= slackArgsLimit {
		return s
	}
	cut, n := 0, 0
	for i := range s {
		if n == slackArgsLimit {
			cut = i
			break
		}
		n++
	}
	s = s[:cut]
	if i := strings.LastIndexByte(s, '&'); i >= 0 && !strings.Contains(s[i:], ";") {
		s = s[:i]
	}
	return s + "…"
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
