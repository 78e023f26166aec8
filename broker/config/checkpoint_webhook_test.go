package config

import (
	"strings"
	"testing"
)

func TestCheckpointWebhook(t *testing.T) {
	const keyed = valid + "transcripts:\n  checkpoint_key_env: CP_KEY\n"
	cfg, err := Parse([]byte(keyed+"  checkpoint_webhook: {url: https://audit.example.com/cp, secret_file: cp.secret}\n"), "/etc/airlock/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Transcripts.CheckpointWebhook
	if w == nil || w.URL != "https://audit.example.com/cp" || w.SecretFile != "/etc/airlock/cp.secret" {
		t.Errorf("checkpoint webhook = %+v", w)
	}
	if cfg, err := Parse([]byte(valid), "airlock.yaml"); err != nil || cfg.Transcripts.CheckpointWebhook != nil {
		t.Errorf("unset: %+v, %v", cfg.Transcripts.CheckpointWebhook, err)
	}
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"bad url", keyed + "  checkpoint_webhook: {url: ftp://x, secret_env: S}\n", []string{"transcripts.checkpoint_webhook.url", "http(s)"}},
		{"no secret", keyed + "  checkpoint_webhook: {url: https://x.example}\n", []string{"transcripts.checkpoint_webhook.secret_env", "signing secret"}},
		{"two secrets", keyed + "  checkpoint_webhook: {url: https://x.example, secret_env: S, secret_file: f}\n", []string{"transcripts.checkpoint_webhook", "not both"}},
		{"no checkpoint key", valid + "transcripts:\n  checkpoint_webhook: {url: https://x.example, secret_env: S}\n", []string{"transcripts.checkpoint_webhook", "checkpoint_key_env"}},
		{"unknown key", keyed + "  checkpoint_webhook: {url: https://x.example, secret_env: S, format: slack}\n", []string{"format"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "airlock.yaml")
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
