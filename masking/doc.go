// Package masking stands between real data and an AI model: it finds and
// replaces sensitive values in everything a tool returns.
//
// A Config holds named profiles. New validates and compiles them into an
// Engine; the broker picks the Profile named by the policy decision and masks
// the tool output with it:
//
//	tool output
//	  ├─ rows (query_db)   → Profile.MaskTable: column rules ("*.email") replace
//	  │                       whole values; other values go through detectors
//	  ├─ objects (k8s)     → Profile.MaskObject: built-in rules (Secret data,
//	  │                       last-applied annotation, secret-looking env values),
//	  │                       then the profile's field paths, then detectors
//	  ├─ text (ssh stdout) → Profile.MaskText, or Profile.NewWriter to stream
//	  └─ result + Counts   → caller records counts as metrics, never values
//
// Content detectors are a table of named entries (detectors.go). They run in
// one pass over the input (scan.go): a 256-entry table marks the bytes that
// can start or sit inside a detectable value ('@', digits, ':', '=', '-', '_',
// 'A', 'B', 'J' ...) for the detectors the profile enables; at those bytes a
// small hand-written matcher reads a bounded window and applies the
// detector's confidence rule (Luhn, mod-97, libphonenumber, netip, a JWT
// header that decodes to JSON with "alg"). No regular expression runs over
// the input except user-defined detectors (behind their keyword prefilter)
// and nothing is allocated when nothing is found: MaskText returns its input.
//
//	input ──► skip bytes not in the anchor table ──► anchor? ──► matcher(window)
//	             ▲                                                 │ match: [start,end) + detector
//	             └──────────── continue after the match ◄──────────┘
//	then: keyword-anchored aws_secret_key and user regexes → merge, coalesce
//	      overlaps → write replacements (redact | partial | hash)
//
// Everything fails closed: a panic inside a detector, a row that does not
// fit its columns or a value type masking cannot inspect is an error, and the
// caller must withhold the output rather than return it unmasked.
package masking
