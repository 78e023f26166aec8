package kubernetes

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/airlock-mcp/airlock/tools"
)

// Result is the structured content of kubectl_get and kubectl_describe.
type Result struct {
	Kind      string `json:"kind"`
	Resource  string `json:"resource,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// Table is the summary (kubectl's columns); Items are the objects
	// (yaml/json, and describe's object).
	Table     *ResultTable `json:"table,omitempty"`
	Items     []any        `json:"items,omitempty"`
	Events    []any        `json:"events,omitempty"`
	Count     int          `json:"count"`
	Truncated bool         `json:"truncated"`
	Continue  string       `json:"continue,omitempty"`
	Notice    string       `json:"notice,omitempty"`
	// EventsError says why describe shows no events (e.g. RBAC).
	EventsError string `json:"events_error,omitempty"`
}

// ResultTable is a summary table.
type ResultTable struct {
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
}

// Render turns a masked Output into a Result and kubectl-like text. It reads
// the Output only: what it shows has been through masking.
func (*Get) Render(out *tools.Output) (any, string) {
	res := result(out)
	var b strings.Builder
	switch str(out.Extra, "output") {
	case OutputYAML:
		writeYAML(&b, res.Items, str(out.Extra, "name") != "")
	case OutputJSON:
		writeJSON(&b, res.Items, str(out.Extra, "name") != "")
	default:
		if res.Table == nil || len(res.Table.Rows) == 0 {
			if res.Namespace != "" {
				fmt.Fprintf(&b, "No resources found in %s namespace.", res.Namespace)
			} else {
				b.WriteString("No resources found.")
			}
		} else {
			writeTable(&b, res.Table.Columns, res.Table.Rows)
		}
	}
	footer(&b, res)
	return res, strings.TrimRight(b.String(), "\n")
}

// Render shows the object as YAML and its events as kubectl describe does.
func (*Describe) Render(out *tools.Output) (any, string) {
	res := result(out)
	if len(res.Items) > 1 {
		res.Events = res.Items[1:]
		res.Items = res.Items[:1]
	}
	var b strings.Builder
	if len(res.Items) == 1 {
		writeYAML(&b, res.Items, true)
	}
	b.WriteString("\nEvents:")
	switch {
	case res.EventsError != "":
		fmt.Fprintf(&b, " not shown (%s)\n", res.EventsError)
	case len(res.Events) == 0:
		b.WriteString(" <none>\n")
	default:
		b.WriteString("\n")
		rows := make([][]any, 0, len(res.Events))
		for _, e := range res.Events {
			ev, _ := e.(map[string]any)
			from := ""
			if src, ok := ev["source"].(map[string]any); ok {
				from = fmt.Sprint(src["component"])
			}
			if from == "" || from == "<nil>" {
				from = str(ev, "reportingComponent")
			}
			age := ""
			if t := eventTime(e); !t.IsZero() {
				age = humanAge(time.Since(t))
				if c, ok := ev["count"].(json.Number); ok && c.String() != "1" {
					age += " (x" + c.String() + ")"
				}
			}
			rows = append(rows, []any{"  " + str(ev, "type"), str(ev, "reason"), age, from, oneLine(str(ev, "message"))})
		}
		writeTable(&b, []string{"  Type", "Reason", "Age", "From", "Message"}, rows)
	}
	footer(&b, res)
	return res, strings.TrimRight(b.String(), "\n")
}

func result(out *tools.Output) *Result {
	res := &Result{
		Kind:        str(out.Extra, "kind"),
		Resource:    str(out.Extra, "resource"),
		Namespace:   str(out.Extra, "namespace"),
		Truncated:   out.Truncated,
		Continue:    str(out.Extra, "continue"),
		Notice:      out.Notice,
		EventsError: str(out.Extra, "events_error"),
		Items:       out.Objects,
	}
	if t := out.Table; t != nil {
		rt := &ResultTable{Rows: t.Rows}
		for _, c := range t.Columns {
			rt.Columns = append(rt.Columns, c.Name)
		}
		res.Table = rt
		res.Count = len(t.Rows)
	} else {
		res.Count = len(out.Objects)
	}
	return res
}

func footer(b *strings.Builder, res *Result) {
	if res.Notice != "" {
		fmt.Fprintf(b, "\n(%s)", res.Notice)
	}
	if res.Continue != "" {
		fmt.Fprintf(b, "\ncontinue: %s", res.Continue)
	}
}

// writeTable aligns rows under upper-cased headers, like kubectl get.
func writeTable(b *strings.Builder, cols []string, rows [][]any) {
	w := tabwriter.NewWriter(b, 0, 8, 3, ' ', 0)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = strings.ToUpper(c)
	}
	fmt.Fprintln(w, strings.Join(head, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = cell(v)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	_ = w.Flush()
}

func cell(v any) string {
	switch t := v.(type) {
	case nil:
		return "<none>"
	case string:
		if t == "" {
			return "<none>"
		}
		return oneLine(t)
	case map[string]any, []any:
		j, _ := json.Marshal(t)
		return string(j)
	default:
		return fmt.Sprint(t)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// writeYAML prints one object, or a v1 List of several, as kubectl -o yaml.
func writeYAML(b *strings.Builder, items []any, single bool) {
	var v any = map[string]any{"apiVersion": "v1", "kind": "List", "items": nonNil(items)}
	if single && len(items) == 1 {
		v = items[0]
	}
	y, err := yaml.Marshal(v)
	if err != nil {
		fmt.Fprintf(b, "# cannot render as YAML: %v\n", err)
		return
	}
	b.Write(y)
}

func writeJSON(b *strings.Builder, items []any, single bool) {
	var v any = map[string]any{"apiVersion": "v1", "kind": "List", "items": nonNil(items)}
	if single && len(items) == 1 {
		v = items[0]
	}
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fmt.Fprintf(b, "cannot render as JSON: %v\n", err)
		return
	}
	b.Write(j)
	b.WriteString("\n")
}

func nonNil(items []any) []any {
	if items == nil {
		return []any{}
	}
	return items
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// humanAge is kubectl's short duration: 45s, 12m, 5h, 3d.
func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 3*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}
