package config

import (
	"strings"
	"testing"
)

// Two approval webhooks with the same URL and format would share one name
// in the store's outbox, so each approval would reach that receiver once
// for the two of them, signed with whichever secret the first sender had:
// the config is refused instead. The same URL in another format is another
// webhook.
func TestApprovalWebhooksMustDiffer(t *testing.T) {
	const base = valid + "public_url: https://airlock.example.com\napprovals:\n  webhooks:\n"
	for _, tt := range []struct {
		name, hooks string
		want        string // "" when the config is valid
	}{
		{"same url and format", "    - {url: https://hooks.example.com/a, secret_env: A}\n    - {url: https://hooks.example.com/a, secret_env: B}\n", "approvals.webhooks[1]: has the same url and format as approvals.webhooks[0]"},
		{"json spelled out and left out", "    - {url: https://hooks.example.com/a, secret_env: A}\n    - {url: https://hooks.example.com/a, secret_env: B, format: json}\n", "approvals.webhooks[1]: has the same url and format as approvals.webhooks[0]"},
		{"same url, other format", "    - {url: https://hooks.example.com/a, secret_env: A}\n    - {url: https://hooks.example.com/a, secret_env: B, format: slack}\n", ""},
		{"other url", "    - {url: https://hooks.example.com/a, secret_env: A}\n    - {url: https://hooks.example.com/b, secret_env: A}\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(base+tt.hooks), "airlock.yaml")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Parse: %v, want a valid config", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Parse: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// Red team 4d: a stdio identity whose subject held a NUL ("\0" in YAML)
// gave every call a subject the transcript cannot record as it is.
func TestIdentitySubjectMustBeRecordable(t *testing.T) {
	for _, sub := range []string{`"ada\0"`, `"ada\x07"`, `"line\nbreak"`} {
		_, err := Parse([]byte(valid+"identity: {subject: "+sub+"}\n"), "airlock.yaml")
		if err == nil || !strings.Contains(err.Error(), "identity.subject: must be UTF-8 without control characters") {
			t.Errorf("identity.subject %s: %v, want it refused", sub, err)
		}
	}
	if _, err := Parse([]byte(valid+"identity: {subject: ada}\n"), "airlock.yaml"); err != nil {
		t.Errorf("a plain subject: %v", err)
	}
}
