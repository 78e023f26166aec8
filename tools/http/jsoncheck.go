package httpkind

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"unicode"
)

// maxNumberLen bounds a number literal in a request body: longer ones
// cannot be compared exactly at a reasonable cost.
const maxNumberLen = 64

// maxBodyDepth bounds the nesting of a JSON request body. The body is in
// the call's facts and transcript events a few levels further in, and the
// transcript refuses data nested deeper than 10,000 levels: a body near
// that could be decided on but not recorded.
const maxBodyDepth = 1000

// checkJSONBody refuses a JSON request body that policy and the service
// could read differently:
//   - an object with two keys equal under Unicode case folding ("amount"
//     twice; "amount" and "Amount", which Go's encoding/json matches alike;
//     "status" and "ſtatus"): parsers keep the first, the last, or either;
//   - a number policy would not see exactly: one beyond float64 (policy
//     would see nil), rounded (50.000000000000001 reads as 50), or an
//     integer past 2^53;
//   - a top-level method override field (_method: Laravel reads it from
//     JSON bodies);
//   - nesting deeper than maxBodyDepth.
func checkJSONBody(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object    bool
		expectKey bool
		keys      map[string]string // folded → as written
	}
	var stack []*frame
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].expectKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not valid JSON: %v", err)
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			f := stack[n-1]
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			k, _ := tok.(string)
			fk := foldKey(k)
			if prev, dup := f.keys[fk]; dup {
				if prev == k {
					return fmt.Errorf("the key %q is given twice in one object; services disagree about which one counts", k)
				}
				return fmt.Errorf("the keys %q and %q are given twice in one object (equal but for case); services disagree about which one counts", prev, k)
			}
			f.keys[fk] = k
			if n == 1 && methodOverrideKey(k) {
				return fmt.Errorf("the field %q is refused: it is a method override (frameworks would run the method it names, not the one policy decides on)", k)
			}
			f.expectKey = false
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') && len(stack) == maxBodyDepth {
			return fmt.Errorf("it nests deeper than %d levels", maxBodyDepth)
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{object: true, expectKey: true, keys: map[string]string{}})
			case '[':
				stack = append(stack, &frame{})
			default: // ']' ('}' is handled with the keys)
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case json.Number:
			if err := exactNumber(string(t)); err != nil {
				return err
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

// foldKey maps a key to a canonical case: each rune to the smallest rune
// of its Unicode case-folding orbit (s, S and ſ alike; k, K and the Kelvin
// sign alike).
func foldKey(k string) string {
	out := make([]rune, 0, len(k))
	for _, r := range k {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		out = append(out, min)
	}
	return string(out)
}

// exactNumber refuses a number literal that policy (which reads numbers as
// float64) would see as another number.
func exactNumber(s string) error {
	if len(s) > maxNumberLen {
		return fmt.Errorf("the number %s… is %d characters long; policy reads numbers as 64-bit floats: send it as a string", s[:16], len(s))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("the number %s is beyond what policy can read (64-bit floats): send it as a string", s)
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		// A huge exponent would make the exact comparison expensive; no
		// float64 needs one.
		if e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+")); err != nil || e > 400 || e < -400 {
			return fmt.Errorf("the number %s is beyond what policy can read (64-bit floats): send it as a string", s)
		}
	}
	lit, ok := new(big.Rat).SetString(s)
	if !ok {
		return fmt.Errorf("the number %s does not parse", s)
	}
	shortest := strconv.FormatFloat(f, 'g', -1, 64)
	seen, _ := new(big.Rat).SetString(shortest)
	if seen == nil || lit.Cmp(seen) != 0 {
		return fmt.Errorf("the number %s would read as %s in policy (64-bit floats): send it as a string or with fewer digits", s, shortest)
	}
	return nil
}
