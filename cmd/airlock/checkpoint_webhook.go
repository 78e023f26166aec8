package main

import (
	"github.com/airlock-mcp/airlock/broker/approval"
	"github.com/airlock-mcp/airlock/broker/config"
)

// resolveCheckpointWebhook returns the checkpoint webhook of cfg with its
// signing secret read from the environment variable or file the config
// names, or nil when none is configured.
func resolveCheckpointWebhook(cfg *config.Config) (*approval.WebhookConfig, error) {
	w := cfg.Transcripts.CheckpointWebhook
	if w == nil {
		return nil, nil
	}
	env := config.OSEnvironment{Dir: cfg.Dir}
	secret, err := config.Secret(env, "transcripts.checkpoint_webhook.secret", w.SecretEnv, w.SecretFile)
	if err != nil {
		return nil, err
	}
	return &approval.WebhookConfig{URL: w.URL, SecretEnv: w.SecretEnv, SecretFile: w.SecretFile, Secret: approval.Secret(secret)}, nil
}
