// Command receiver is a minimal airlock approval webhook receiver: it
// verifies each delivery's signature, rejects replays, and prints the
// approval. Run it with the secret airlock signs with:
//
//	AIRLOCK_WEBHOOK_SECRET=... go run ./examples/webhooks -listen 127.0.0.1:9000
//
// and point airlock at it:
//
//	approvals:
//	  webhooks:
//	    - url: http://127.0.0.1:9000/hook
//	      secret_env: AIRLOCK_WEBHOOK_SECRET
//
// It imports only broker/approval/webhook, which depends on the standard
// library alone.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker/approval/webhook"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	flag.Parse()
	secret := []byte(os.Getenv("AIRLOCK_WEBHOOK_SECRET"))
	if len(secret) == 0 {
		log.Fatal("set AIRLOCK_WEBHOOK_SECRET to the secret airlock signs with")
	}
	r := &receiver{secret: secret, seen: map[string]time.Time{}}
	http.Handle("POST /hook", r)
	log.Printf("listening on http://%s/hook", *listen)
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

type receiver struct {
	secret []byte

	mu   sync.Mutex
	seen map[string]time.Time // delivery id → when first seen
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	// Signature and freshness: the timestamp must be within 5 minutes.
	if err := webhook.Verify(rc.secret, r.Header, body, time.Now()); err != nil {
		log.Printf("rejected delivery from %s: %v", r.RemoteAddr, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	// Within those 5 minutes, a captured request could be sent again; and
	// airlock delivers at least once: a retry (signed afresh, after a
	// receiver outage or an airlock restart) carries the same delivery id.
	// Keep the ids seen for a day, so processing is idempotent.
	if rc.replayed(r.Header.Get(webhook.HeaderDelivery)) {
		w.WriteHeader(http.StatusOK) // already handled
		return
	}

	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	a := p.Approval
	// Arguments come from an AI agent: print them as data, never render
	// them as markup.
	fmt.Printf("%s: %s (%s) wants %s on %s\n  arguments: %s\n  approvers: %v (min %d), expires %s\n  decide: %s\n",
		p.Type, a.Requester.Subject, a.Requester.Email, a.Tool, a.Resource, a.Arguments,
		a.Approvers.Groups, a.Approvers.Min, a.ExpiresAt.Local().Format(time.Kitchen), a.Links.Page)
	for _, rule := range a.Rules {
		fmt.Printf("  rule %s (%s): %s\n", rule.Rule, rule.Effect, rule.Message)
	}
	w.WriteHeader(http.StatusNoContent)
}

// seenFor is how long a delivery id is remembered: longer than airlock
// goes on retrying one delivery in practice (its attempts and backoff, plus
// a restart), as long as it keeps finished deliveries in its outbox.
const seenFor = 24 * time.Hour

func (rc *receiver) replayed(id string) bool {
	if id == "" {
		return false
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	now := time.Now()
	for k, at := range rc.seen {
		if now.Sub(at) > seenFor {
			delete(rc.seen, k)
		}
	}
	if _, ok := rc.seen[id]; ok {
		return true
	}
	rc.seen[id] = now
	return false
}
