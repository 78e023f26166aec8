package broker

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/recorder"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Red team 4h: connections that go half-open at other moments than the
// COMMIT, with another replica appending all the while.

// rt4hHalf swallows, once armed, a write that holds match: all of it, or
// (partial) its first half only, the rest and everything after going
// nowhere; the socket is never closed under the server (a partition).
type rt4hHalf struct {
	match   []byte
	partial bool
	armed   atomic.Bool
	hung    atomic.Int64
	mu      sync.Mutex
	socks   []net.Conn
}

type rt4hHalfConn struct {
	net.Conn
	h    *rt4hHalf
	mu   sync.Mutex
	hung bool
}

func (c *rt4hHalfConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hung {
		return len(b), nil
	}
	if bytes.Contains(b, c.h.match) && c.h.armed.CompareAndSwap(true, false) {
		c.hung = true
		c.h.hung.Add(1)
		c.h.mu.Lock()
		c.h.socks = append(c.h.socks, c.Conn)
		c.h.mu.Unlock()
		if c.h.partial {
			if _, err := c.Conn.Write(b[:len(b)/2]); err != nil {
				return 0, err
			}
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *rt4hHalfConn) Close() error {
	c.mu.Lock()
	hung := c.hung
	c.mu.Unlock()
	if hung {
		return nil
	}
	return c.Conn.Close()
}

func (h *rt4hHalf) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.socks {
		s.Close()
	}
	h.socks = nil
}

func rt4hHalfDB(t *testing.T, dsn string, h *rt4hHalf) *sql.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["client_encoding"] = "UTF8"
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &rt4hHalfConn{Conn: c, h: h}, nil
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(10)
	t.Cleanup(func() { db.Close() })
	t.Cleanup(h.release)
	return db
}

func rt4hCount(t *testing.T, db *sql.DB, typ string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM transcript_events WHERE type = $1`, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Attack 3: replica A's connection goes half-open (its COMMIT swallowed,
// or half of a large INSERT's message, the server left reading the rest),
// holding the chain lock. Replica B, on a healthy pool with the default
// append timeout, appends all along: every one of its appends should
// succeed, none waiting much more than the chain's idle timeout; A is told
// the truth (not made, or in doubt, never success); A appends again once
// the server has ended the lost transaction; the chain verifies, with no
// seq gap and no event twice.
func TestRedTeam4hPGTwoReplicasHalfOpen(t *testing.T) {
	big := `{"blob":"` + strings.Repeat("x", 256<<10) + `","m":"rt4h-marker"}`
	for _, mode := range []struct {
		name    string
		match   string
		partial bool
		data    string
	}{
		{"commit", "commit\x00", false, ""},
		{"partial-insert", "rt4h-marker", true, big},
		{"whole-insert", "rt4h-marker", false, big},
	} {
		t.Run(mode.name, func(t *testing.T) {
			ctx := context.Background()
			u, st := rt4hIsoDB(t, "")
			h := &rt4hHalf{match: []byte(mode.match), partial: mode.partial}
			recA, err := recorder.New(rt4hHalfDB(t, u, h), recorder.WithAppendTimeout(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			recB, err := recorder.New(st.DB())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []*recorder.Recorder{recA, recB} {
				if _, err := r.Append(ctx, recorder.Event{Type: "rt4h.warmup"}); err != nil {
					t.Fatal(err)
				}
			}
			var data json.RawMessage
			if mode.data != "" {
				data = json.RawMessage(mode.data)
			}
			h.armed.Store(true)
			started := time.Now()
			var (
				wg     sync.WaitGroup
				aErr   error
				aTook  time.Duration
				bFails []string
				bMax   time.Duration
				bOK    int
				bEnd   = started.Add(9 * time.Second)
			)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, aErr = recA.Append(ctx, recorder.Event{Type: "rt4h.lost", Data: data})
				aTook = time.Since(started)
			}()
			time.Sleep(100 * time.Millisecond)
			for time.Now().Before(bEnd) {
				s := time.Now()
				_, err := recB.Append(ctx, recorder.Event{Type: "rt4h.b"})
				d := time.Since(s)
				bMax = max(bMax, d)
				if err != nil {
					bFails = append(bFails, err.Error())
				} else {
					bOK++
				}
				time.Sleep(20 * time.Millisecond)
			}
			wg.Wait()
			if h.hung.Load() != 1 {
				t.Fatalf("nothing was swallowed")
			}
			lost := rt4hCount(t, st.DB(), "rt4h.lost")
			t.Logf("%s: A = %v after %v; rt4h.lost stored %d; B: %d ok, %d failed (%v), slowest %v",
				mode.name, aErr, aTook.Round(time.Millisecond), lost, bOK, len(bFails), bFails, bMax.Round(time.Millisecond))
			if aErr == nil {
				t.Errorf("A was told its append was made")
			}
			if aErr != nil && !errors.Is(aErr, recorder.ErrOutcomeUnknown) && lost != 0 {
				t.Errorf("A was told not made, and its event is stored")
			}
			if len(bFails) > 0 {
				t.Errorf("replica B: %d appends failed while A's connection was half-open: %v", len(bFails), bFails[0])
			}
			if bMax > 6500*time.Millisecond {
				t.Errorf("replica B: an append waited %v", bMax)
			}
			// A, on a new connection of its pool, appends again.
			if _, err := recA.Append(ctx, recorder.Event{Type: "rt4h.a.after"}); err != nil {
				t.Errorf("A's next append: %v", err)
			}
			h.release()
			time.Sleep(200 * time.Millisecond)
			if n := rt4hCount(t, st.DB(), "rt4h.lost"); n != 0 {
				t.Errorf("after the socket closed, rt4h.lost is stored %d times", n)
			}
			if !verifyOK(t, recB) {
				t.Errorf("the chain does not verify")
			}
		})
	}
}
