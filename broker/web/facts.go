package web

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools/postgres"
)

// sqlFactsView is what PostgreSQL's parser says the SQL is, shown beside
// the text: per statement its kind, the tables it writes and reads, and,
// for UPDATE and DELETE, whether it has a WHERE. It comes from the same
// function policy's facts come from (postgres.SQLFacts, pg_query.Parse),
// so a comment or a string that hides part of the text hides it here too.
type sqlFactsView struct {
	Error      string // the parser's complaint, when the SQL does not parse
	Statements []stmtView
}

type stmtView struct {
	Kind          string // upper case: UPDATE
	TablesWritten []string
	TablesRead    []string
	// Where is "yes" or "no — every row" for UPDATE and DELETE, "" for
	// other kinds.
	Where    string
	EveryRow bool
}

func viewSQLFacts(sql string) *sqlFactsView {
	f := postgres.SQLFacts(sql)
	v := &sqlFactsView{Error: f.ParseError}
	for _, st := range f.Statements {
		v.Statements = append(v.Statements, viewStatement(st))
	}
	return v
}

func viewStatement(st policy.Statement) stmtView {
	s := stmtView{Kind: strings.ToUpper(st.Kind), TablesWritten: st.TablesWritten, TablesRead: st.TablesRead}
	switch st.Kind {
	case "update", "delete":
		if st.HasWhere {
			s.Where = "yes"
		} else {
			s.Where, s.EveryRow = "no — every row", true
		}
	}
	return s
}

// kindFactsView is the facts of a kind registered with policy.RegisterFacts
// (http, ...), from the call.decided event policy decided on: one line per
// fact, under the name rules read it by ("http.method"), so approvers see
// what the rules saw without the page knowing the kind.
type kindFactsView struct {
	Name  string // the kind's facts name
	Facts []kv   // "http.method" → "POST", sorted by name
}

func viewKindFacts(f policy.Facts) *kindFactsView {
	name, v, ok := f.Registered()
	if !ok {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var fields map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		return nil
	}
	view := &kindFactsView{Name: name}
	for k, val := range fields {
		view.Facts = append(view.Facts, kv{name + "." + k, cellText(val)})
	}
	sort.Slice(view.Facts, func(i, j int) bool { return view.Facts[i].Key < view.Facts[j].Key })
	return view
}
