package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fileSize returns the size of path, 0 if it does not exist.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// writeScratch inserts rows blobs of rowBytes into the scratch table on
// the store's writer, ten to a transaction, calling after each commit.
func writeScratch(t *testing.T, s *Store, rows, rowBytes int, after func()) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < rows; i += 10 {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO scratch (b) VALUES (randomblob(?))`, rowBytes); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		after()
	}
}

// TestWALCheckpointedInBackground: a file store's commits do not
// checkpoint the log (the database file stays as it was while the log
// grows past SQLite's 1,000-page automatic checkpoint), and the store's
// checkpointer copies the log into the database file in the background.
func TestWALCheckpointedInBackground(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stopped := s.wal
	if err := stopped.close(); err != nil { // stop it: only commits run now
		t.Fatal(err)
	}
	s.wal = nil
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE scratch (b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	before := fileSize(t, path)
	const rows, rowBytes = 1500, 4000 // ~1,500 pages: past the automatic checkpoint's 1,000
	writeScratch(t, s, rows, rowBytes, func() {})
	if got := fileSize(t, path); got != before {
		t.Errorf("the database file went from %d to %d bytes with no checkpointer running: a commit checkpointed the log", before, got)
	}
	if wal := fileSize(t, path+"-wal"); wal < rows*rowBytes {
		t.Errorf("the log holds %d bytes after %d bytes of commits, want them all (no checkpoint reset it)", wal, rows*rowBytes)
	}

	if s.wal, err = startWALCheckpointer(stopped.dsn, s.db, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for fileSize(t, path) < rows*rowBytes && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := fileSize(t, path); got < rows*rowBytes {
		t.Fatalf("the database file is %d bytes %v after the commits, want the %d bytes the log holds copied in", got, 20*time.Second, rows*rowBytes)
	}
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM scratch`).Scan(&n); err != nil || n != rows {
		t.Errorf("after the checkpoint: %d rows (%v), want %d", n, err, rows)
	}
}

// TestWALBoundedWithoutTheCheckpointer: with the checkpointer's
// checkpoints failing (its connection closed under it), the writer
// checkpoints for itself past walWriterPages, so the log stays bounded.
func TestWALBoundedWithoutTheCheckpointer(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pages int
	if err := s.db.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&pages); err != nil || pages != walWriterPages {
		t.Fatalf("the writer's wal_autocheckpoint is %d (%v), want %d", pages, err, walWriterPages)
	}
	if err := s.wal.conn.Close(); err != nil { // every checkpoint of its fails from now on
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE scratch (b BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const rows, rowBytes = 6000, 4000 // ~6,000 pages: past walWriterPages
	var wal int64
	writeScratch(t, s, rows, rowBytes, func() { wal = max(wal, fileSize(t, path+"-wal")) })
	// A log frame is a page and a 24-byte header; the commit that crosses
	// the threshold adds its own ten rows.
	if limit := int64(walWriterPages+20) * (4096 + 24); wal > limit {
		t.Errorf("the log reached %d bytes with the checkpointer failing, want at most %d (%d pages)", wal, limit, walWriterPages)
	}
}
