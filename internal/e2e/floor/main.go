// Command floor is the floor of the peer benchmarks (issue 14): an MCP
// server on airlock's own stack — mcp-go's stdio and streamable HTTP
// transports, pgx — with one tool, query, that runs the SQL it is given on
// an open pool and answers with the rows, structured and as JSON text, as
// query_db does. It has none of airlock's controls: no identity, facts,
// policy, lease, masking or transcript. What airlock takes above it is
// what the controls cost; what it takes against the peers is the stack's.
//
// It is a benchmark fixture, never a server to run: it executes any SQL.
//
//	floor --dsn postgres://… [--http 127.0.0.1:PORT]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func main() {
	dsn := flag.String("dsn", "", "PostgreSQL URL")
	listen := flag.String("http", "", "serve streamable HTTP on this 127.0.0.1 address (/mcp, /healthz) instead of stdio")
	flag.Parse()
	if err := run(*dsn, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(dsn, listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return err
	}

	s := server.NewMCPServer("floor", "1", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("query",
		mcp.WithDescription("Run SQL (benchmark fixture)."),
		mcp.WithString("sql", mcp.Required()),
	), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		sql, err := req.RequireString("sql")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		out, err := query(ctx, pool, sql)
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		text, err := json.Marshal(out)
		if err != nil {
			return nil, err
		}
		return mcp.NewToolResultStructured(out, string(text)), nil
	})

	if listen == "" {
		return server.NewStdioServer(s).Listen(ctx, os.Stdin, os.Stdout)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(s))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Addr: listen, Handler: mux}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// query runs sql and returns its columns and rows.
func query(ctx context.Context, pool *pgxpool.Pool, sql string) (map[string]any, error) {
	rows, err := pool.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var columns []string
	for _, f := range rows.FieldDescriptions() {
		columns = append(columns, f.Name)
	}
	out := [][]any{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return map[string]any{"columns": columns, "rows": out, "row_count": len(out)}, nil
}
