package broker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/masking"
)

// Arguments and facts are masked from one exact decoding: a card number
// sent as a JSON number is masked like the same digits in a string (a
// float64 would have slipped past the detectors), and other numbers keep
// every digit.
func TestMaskArgumentsDecodesNumbersExactly(t *testing.T) {
	cfg := masking.DefaultConfig()
	d := cfg.Profiles["default"]
	d.Detectors = append(d.Detectors, "payment_card")
	cfg.Profiles["default"] = d
	engine, err := masking.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	masked, _, err := (&Broker{}).maskArguments(&State{Masking: engine}, json.RawMessage(`{"params":[4111111111111111, 9007199254740993]}`))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(masked)
	if strings.Contains(string(out), "4111111111111111") {
		t.Errorf("a card number sent as a number was not masked: %s", out)
	}
	if !strings.Contains(string(out), "9007199254740993") {
		t.Errorf("a large integer lost digits: %s", out)
	}
}
