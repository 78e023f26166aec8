package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/airlock-mcp/airlock/masking"
)

// decodeExact decodes JSON arguments keeping every number as the text the
// agent sent (json.Number): 9007199254740993 is not a float64, so it is
// shown to approvers, masked and recorded as exactly what runs.
func decodeExact(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("arguments: unexpected data after the JSON value")
	}
	return v, nil
}

// maskExactArguments masks a call's arguments for the transcript and the
// approvers with the default profile, decoding them exactly (decodeExact):
// what the approver reads and the transcript keeps is the call that runs.
func (b *Broker) maskExactArguments(st *State, args json.RawMessage) (any, masking.Counts, error) {
	p, ok := st.Masking.Profile(DefaultMaskProfile)
	if !ok {
		return nil, nil, fmt.Errorf("masking profile %q is not defined", DefaultMaskProfile)
	}
	v, err := decodeExact(args)
	if err != nil {
		return nil, nil, err
	}
	return p.MaskObject(v)
}
