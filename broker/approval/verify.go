package approval

import (
	"net/http"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
)

// VerifyWebhook checks a delivery's Airlock-Timestamp and Airlock-Signature
// headers against body and secret, rejecting timestamps more than five
// minutes from now. It is webhook.Verify; receivers that do not want
// airlock's dependencies import broker/approval/webhook directly.
func VerifyWebhook(secret []byte, header http.Header, body []byte, now time.Time) error {
	return webhook.Verify(secret, header, body, now)
}
