package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreURLs(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "airlock.yaml")
	tests := []struct {
		name, store string
		wantErr     string // substring; empty: loads
		wantURL     string // StoreURL, when it loads
	}{
		{"sqlite relative", "sqlite://./a.db", "", "sqlite://" + filepath.Join(dir, "a.db")},
		{"sqlite synchronous full", "sqlite://./a.db?synchronous=full", "", "sqlite://" + filepath.Join(dir, "a.db") + "?synchronous=full"},
		{"sqlite synchronous off", "sqlite://./a.db?synchronous=off", "want normal or full", ""},
		{"sqlite driver parameter", "sqlite://./a.db?_journal_mode=delete", "the one parameter is synchronous", ""},
		{"postgres", "postgres://airlock@db:5432/airlock?sslmode=verify-full&password_env=PW", "",
			"postgres://airlock@db:5432/airlock?sslmode=verify-full&password_env=PW"},
		{"postgresql, relative password file", "postgresql://airlock@db/airlock?password_file=secrets/pw", "",
			"postgresql://airlock@db/airlock?password_file=" + strings.ReplaceAll(filepath.Join(dir, "secrets/pw"), "/", "%2F")},
		{"password in URL", "postgres://airlock:hunter2@db/airlock", "secrets are never in the config file", ""},
		{"password parameter", "postgres://airlock@db/airlock?password=hunter2", "secrets are never in the config file", ""},
		{"both references", "postgres://airlock@db/airlock?password_env=A&password_file=/b", "not both", ""},
		{"no database", "postgres://airlock@db", "names no database", ""},
		{"mysql", "mysql://root:hunter2@db/x", "is not supported", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte("auth: {mode: none}\nstore: "+tt.store+"\n"), src)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.StoreURL(); got != tt.wantURL {
					t.Errorf("StoreURL = %q, want %q", got, tt.wantURL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestTranscriptsConfig(t *testing.T) {
	src := filepath.Join(t.TempDir(), "airlock.yaml")
	cfg, err := Parse([]byte("auth: {mode: none}\ntranscripts: {checkpoint_key_file: ck}\n"), src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Transcripts.CheckpointInterval.String() != "1m0s" || cfg.Transcripts.CheckpointKeyFile != filepath.Join(filepath.Dir(src), "ck") {
		t.Errorf("Transcripts = %+v", cfg.Transcripts)
	}
	for _, bad := range []string{"{checkpoint_interval: 0s}", "{checkpoint_key_env: A, checkpoint_key_file: b}"} {
		if _, err := Parse([]byte("auth: {mode: none}\ntranscripts: "+bad+"\n"), src); err == nil {
			t.Errorf("transcripts: %s loaded", bad)
		}
	}
}
