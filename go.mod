module github.com/airlock-mcp/airlock

go 1.26.8
