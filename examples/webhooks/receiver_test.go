package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
)

func TestReceiver(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	rc := &receiver{secret: secret, seen: map[string]time.Time{}}
	body := `{"type":"approval.requested","approval":{"id":"a1","tool":"query_db","arguments":{}}}`
	send := func(signWith []byte, at time.Time, delivery string) int {
		req := httptest.NewRequest("POST", "/hook", strings.NewReader(body))
		req.Header.Set(webhook.HeaderDelivery, delivery)
		webhook.SetHeaders(req.Header, signWith, at, []byte(body))
		rec := httptest.NewRecorder()
		rc.ServeHTTP(rec, req)
		return rec.Code
	}
	tests := []struct {
		name     string
		secret   []byte
		at       time.Time
		delivery string
		want     int
	}{
		{"valid", secret, time.Now(), "d1", http.StatusNoContent},
		{"same delivery again", secret, time.Now(), "d1", http.StatusOK},
		{"wrong secret", []byte("nope"), time.Now(), "d2", http.StatusUnauthorized},
		{"stale", secret, time.Now().Add(-10 * time.Minute), "d3", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		if got := send(tt.secret, tt.at, tt.delivery); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
}
