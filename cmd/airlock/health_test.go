package main

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/store"
	"github.com/airlock-mcp/airlock/recorder"
)

// /healthz fails once the transcript's writer is stuck, so that an
// orchestrator restarts airlock, which every call is refused until: here
// a hook leaves a row scanned into sql.RawBytes open, and the writer's
// rollback never returns.
func TestHealthzFailsWhileTheTranscriptWriterIsStuck(t *testing.T) {
	t.Parallel()
	st, err := store.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "airlock.db"))
	if err != nil {
		t.Fatal(err)
	}
	// The store is not closed: its one writer connection stays wedged.
	rec, err := recorder.New(st.DB(), recorder.WithAppendTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	a := &app{rec: rec}
	probe := func() (int, string) {
		w := httptest.NewRecorder()
		a.healthz(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := probe(); code != http.StatusOK {
		t.Fatalf("/healthz before = %d %q", code, body)
	}
	_, err = rec.AppendWith(context.Background(), recorder.Event{Type: "test.wedge"}, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT hash FROM transcript_events UNION ALL SELECT 'x'`)
		if err != nil {
			return err
		}
		rows.Next()
		var raw sql.RawBytes
		if err := rows.Scan(&raw); err != nil {
			return err
		}
		return errors.New("leaving the rows open")
	})
	if !errors.Is(err, recorder.ErrOutcomeUnknown) {
		t.Fatalf("the wedged append: %v; want ErrOutcomeUnknown", err)
	}
	code, body := probe()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "writer is stuck") {
		t.Errorf("/healthz while the writer is stuck = %d %q, want 503 saying so", code, body)
	}
}
