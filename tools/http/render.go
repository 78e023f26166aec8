package httpkind

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/airlock-mcp/airlock/tools"
)

// Result is the structured content of http_request.
type Result struct {
	Status      int               `json:"status"`
	StatusText  string            `json:"status_text,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
	ContentType string            `json:"content_type,omitempty"`
	// Body is the JSON body (masked field by field); Text the text body
	// (masked by the detectors). At most one is set.
	Body       any    `json:"body,omitempty"`
	Text       string `json:"text,omitempty"`
	BodyBytes  int    `json:"body_bytes"`
	Truncated  bool   `json:"truncated"`
	Notice     string `json:"notice,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// Render turns a masked Output into a Result and a short text: the status
// line, the shown headers and the body (JSON indented).
func (*Request) Render(out *tools.Output) (any, string) {
	res := &Result{
		StatusText:  str(out.Extra, "status_text"),
		ContentType: str(out.Extra, "content_type"),
		Truncated:   out.Truncated,
		Notice:      out.Notice,
		DurationMS:  out.Duration.Milliseconds(),
		Headers:     map[string]string{},
	}
	res.Status = num(out.Extra["status"])
	res.BodyBytes = num(out.Extra["body_bytes"])
	if h, ok := out.Extra["headers"].(map[string]any); ok {
		for k, v := range h {
			res.Headers[k] = fmt.Sprint(v)
		}
	}
	if len(out.Objects) > 0 {
		res.Body = out.Objects[0]
	}
	if out.Streams != nil {
		res.Text = out.Streams.Stdout
	}

	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d %s\n", res.Status, res.StatusText)
	names := make([]string, 0, len(res.Headers))
	for k := range res.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "%s: %s\n", k, res.Headers[k])
	}
	switch {
	case res.Body != nil || len(out.Objects) > 0:
		j, err := json.MarshalIndent(res.Body, "", "  ")
		if err != nil {
			j = []byte("(the body cannot be shown as JSON)")
		}
		b.WriteString("\n")
		b.Write(j)
		b.WriteString("\n")
	case res.Text != "":
		b.WriteString("\n")
		b.WriteString(res.Text)
		if !strings.HasSuffix(res.Text, "\n") {
			b.WriteString("\n")
		}
	}
	if res.Notice != "" {
		fmt.Fprintf(&b, "\n(%s)", res.Notice)
	}
	return res, strings.TrimRight(b.String(), "\n")
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// num reads a number Extra holds as an int, or as a float64 or json.Number
// once masking has been through it as JSON.
func num(v any) int {
	switch t := v.(type) {
	case int:
		return t
	case int64:
		return int(t)
	case float64:
		return int(t)
	case json.Number:
		i, _ := t.Int64()
		return int(i)
	}
	return 0
}
