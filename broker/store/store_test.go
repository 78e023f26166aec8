package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openMem(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), "sqlite://:memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenURLs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	tests := []struct {
		name    string
		url     string
		wantErr string // substring; empty means success
	}{
		{"memory", "sqlite://:memory:", ""},
		{"absolute", "sqlite://" + filepath.Join(dir, "abs.db"), ""},
		{"relative", "sqlite://./rel.db", ""},
		{"relative bare", "sqlite://bare.db", ""},
		{"postgres", "postgres://airlock:hunter2@db.example.com/airlock", "not supported yet"},
		{"postgresql", "postgresql://db/airlock", "not supported yet"},
		{"no scheme", "./airlock.db", "supported: sqlite://"},
		{"unknown scheme", "mysql://db/airlock", "supported: sqlite://"},
		{"empty path", "sqlite://", "no path"},
		{"query in path", "sqlite://./x.db?_pragma=journal_mode(off)", "must not contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open(%q): %v", tt.url, err)
				}
				defer s.Close()
				if v, err := s.SchemaVersion(context.Background()); err != nil || v != len(migrations) {
					t.Errorf("SchemaVersion = %d, %v; want %d", v, err, len(migrations))
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want error containing %q", tt.url, tt.wantErr)
			}
			if !errors.Is(err, ErrUnsupportedURL) {
				t.Errorf("error %v is not ErrUnsupportedURL", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %q", err)
			}
		})
	}
}

func TestOpenFileModeAndPragmas(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, "sqlite://"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.InsertLease(ctx, testLease("l1", time.Now())); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s mode = %o, want 600", filepath.Base(p), perm)
		}
	}

	pragmas := []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"synchronous", "1"}, // NORMAL
		{"busy_timeout", "5000"},
	}
	for _, p := range pragmas {
		for name, db := range map[string]func() (string, error){
			"writer": func() (v string, err error) { err = s.DB().QueryRow("PRAGMA " + p.name).Scan(&v); return },
			"reader": func() (v string, err error) { err = s.ReadDB().QueryRow("PRAGMA " + p.name).Scan(&v); return },
		} {
			got, err := db()
			if err != nil {
				t.Fatalf("%s PRAGMA %s: %v", name, p.name, err)
			}
			if got != p.want {
				t.Errorf("%s PRAGMA %s = %q, want %q", name, p.name, got, p.want)
			}
		}
	}
	if _, err := s.ReadDB().Exec(`DELETE FROM leases`); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestOpenIdempotent(t *testing.T) {
	ctx := context.Background()
	url := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InsertLease(ctx, testLease("keep", time.Now())); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for i := range 2 {
		s, err = Open(ctx, url)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		if _, err := s.Lease(ctx, "keep"); err != nil {
			t.Errorf("reopen %d: lease lost: %v", i, err)
		}
		var rows int
		if err := s.DB().QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&rows); err != nil || rows != 1 {
			t.Errorf("schema_version rows = %d, %v; want 1", rows, err)
		}
		s.Close()
	}
}

func TestOpenNewerSchema(t *testing.T) {
	ctx := context.Background()
	url := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, url); err == nil {
		s.Close()
		t.Fatal("Open accepted a schema newer than it knows")
	}
}

// Concurrent Open of one file must not fail or run a migration twice.
func TestOpenConcurrent(t *testing.T) {
	ctx := context.Background()
	url := "sqlite://" + filepath.Join(t.TempDir(), "airlock.db")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			errs <- s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}
