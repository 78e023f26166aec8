package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/mark3labs/mcp-go/server"
)

// stdioSessionID is the session id mcp-go gives its one stdio session.
const stdioSessionID = "stdio"

// ServeStdio serves the Server over stdin and stdout (newline-delimited
// JSON-RPC) until in ends or ctx is cancelled. A line filter in front of
// mcp-go's stdio server answers the task layer's requests (tasks.go) and
// passes every other line on, unchanged and in order; both write to out
// through one lock, a whole message at a time, so no answer interleaves
// with another.
//
//	stdin ─→ filter ─┬─ tasks/*, tools/call + task ─→ task layer ─┐
//	                 └─ anything else ─→ pipe ─→ mcp-go ──────────┴─→ locked stdout
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	w := &lockedWriter{w: out}
	pr, pw := io.Pipe()
	stdio := server.NewStdioServer(s.mcp)
	listened := make(chan error, 1)
	go func() {
		err := stdio.Listen(ctx, pr, w)
		// Unblock the filter if mcp-go stops reading first.
		_ = pr.CloseWithError(io.ErrClosedPipe)
		listened <- err
	}()

	answerCtx, cancel := context.WithCancel(ctx)
	var (
		answering sync.WaitGroup
		mu        sync.Mutex
		done      bool // no answer starts once set
	)
	go func() {
		defer pw.Close() // EOF for mcp-go once stdin ends
		r := bufio.NewReader(in)
		for {
			line, err := r.ReadBytes('\n')
			if len(bytes.TrimSpace(line)) > 0 {
				if req, ok := s.tasks.claim(line, ""); ok {
					mu.Lock()
					if done {
						mu.Unlock()
						return
					}
					answering.Add(1)
					mu.Unlock()
					go func() {
						defer answering.Done()
						resp, _ := s.tasks.handle(answerCtx, req, stdioSessionID, nil)
						_, _ = w.Write(append(resp, '\n'))
					}()
				} else if _, werr := pw.Write(line); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()

	err := <-listened
	cancel()
	mu.Lock()
	done = true
	mu.Unlock()
	answering.Wait()
	if errors.Is(err, io.ErrClosedPipe) {
		err = nil
	}
	return err
}

// lockedWriter writes each Write whole, never interleaved with another.
// mcp-go writes a message (and its newline) in one Write, as does the task
// layer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
