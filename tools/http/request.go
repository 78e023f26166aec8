package httpkind

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Methods http_request knows. CONNECT and TRACE are never sent.
var (
	methodList   = []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}
	knownMethods = map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true}
	readMethods  = map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true}
)

// Argument bounds.
const (
	maxPathLen     = 2048
	maxQueryKeys   = 64
	maxQueryValues = 256
	maxQueryLen    = 8192
	maxHeaders     = 32
	maxHeaderValue = 8192
	// maxDecodeDepth is how many times a path segment is percent-decoded
	// to look for traversal hidden by double (or deeper) encoding.
	maxDecodeDepth = 4
)

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// splitPath validates an agent's (or a config's) path and returns its
// segments, percent-decoded once. The rules keep the origin and the path
// what policy was told:
//   - no absolute URL ("https://other/") and no scheme-relative "//host";
//   - no "?" or "#" (the query goes in query), no backslash, no control
//     character, no character outside RFC 3986's path characters (encode it);
//   - no empty segment ("a//b"), no "." or ".." segment, at any level of
//     percent-decoding (%2e%2e, %252e%252e), and no encoded "/" or "\"
//     (%2F, %5C), which servers disagree about;
//   - no ";" (a path parameter: Tomcat, Jetty and Spring drop ";..." from a
//     segment before routing, so "..;" climbs and "admin;x" is "admin"),
//     raw or encoded;
//   - a decoded segment is UTF-8 (no overlong "%c0%ae"), and its NFKC form
//     is no dot segment and holds no "/" or "\" (fullwidth "．．", "／").
//
// A leading "/" is implied; a trailing "/" is kept (as an empty last
// segment).
func splitPath(p string) ([]string, error) {
	switch {
	case len(p) > maxPathLen:
		return nil, fmt.Errorf("is %d bytes; at most %d", len(p), maxPathLen)
	case schemeRE.MatchString(p):
		return nil, errors.New("is an absolute URL; give the path only (airlock sends it to the resource's base_url)")
	case strings.HasPrefix(p, "//"):
		return nil, errors.New("starts with //, a scheme-relative URL naming another host; give the path only")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			return nil, errors.New("contains a backslash")
		case c == '?' || c == '#':
			return nil, fmt.Errorf("contains %q; give query parameters in query", c)
		case c == ';':
			return nil, errors.New("contains ';', a path parameter, which servers disagree about (Tomcat and Spring drop what follows it, so \"..;\" climbs); percent-encoded it is refused too")
		case c < 0x20 || c == 0x7f:
			return nil, fmt.Errorf("contains the control character %q", c)
		case !pathChar(c):
			return nil, fmt.Errorf("contains %q; percent-encode it", c)
		}
	}
	trimmed := strings.TrimPrefix(p, "/")
	if trimmed == "" {
		return []string{}, nil
	}
	raw := strings.Split(trimmed, "/")
	segs := make([]string, 0, len(raw))
	for i, s := range raw {
		if s == "" {
			if i == len(raw)-1 {
				segs = append(segs, "") // trailing slash
				continue
			}
			return nil, errors.New("has an empty segment (//)")
		}
		dec, err := checkSegment(s)
		if err != nil {
			return nil, err
		}
		segs = append(segs, dec)
	}
	return segs, nil
}

// checkSegment decodes one raw segment once for the facts, and further to
// find traversal hidden by repeated encoding.
func checkSegment(s string) (string, error) {
	first, err := url.PathUnescape(s)
	if err != nil {
		return "", fmt.Errorf("segment %q is not valid percent-encoding", s)
	}
	cur := s
	for depth := 0; depth <= maxDecodeDepth; depth++ {
		if depth > 0 {
			next, err := url.PathUnescape(cur)
			if err != nil || next == cur {
				break // "100%25" is "100%": nothing more to decode
			}
			cur = next
		}
		switch {
		case cur == "." || cur == "..":
			return "", fmt.Errorf("segment %q is a dot segment (%q once decoded); paths cannot climb out of the resource", s, cur)
		case depth > 0 && strings.ContainsAny(cur, "/\\"):
			return "", fmt.Errorf("segment %q encodes / or \\, which servers disagree about", s)
		case depth > 0 && strings.IndexFunc(cur, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
			return "", fmt.Errorf("segment %q encodes a control character", s)
		case depth > 0 && strings.Contains(cur, ";"):
			return "", fmt.Errorf("segment %q encodes ';', a path parameter, which servers disagree about", s)
		case depth > 0 && !utf8.ValidString(cur):
			return "", fmt.Errorf("segment %q decodes to bytes that are not UTF-8 (overlong forms such as %%c0%%ae are read as \".\" by lax servers)", s)
		}
		if depth > 0 {
			// Servers that normalise Unicode read "．．" as ".." and "／" as "/".
			switch n := norm.NFKC.String(cur); {
			case n == "." || n == "..":
				return "", fmt.Errorf("segment %q is a dot segment (%q once decoded and normalised); paths cannot climb out of the resource", s, n)
			case strings.ContainsAny(n, "/\\;"):
				return "", fmt.Errorf("segment %q encodes / or \\ (or ;) once normalised, which servers disagree about", s)
			}
		}
		if !strings.Contains(cur, "%") {
			break
		}
	}
	return first, nil
}

// pathChar reports RFC 3986 pchar (plus "/" and the "%" of an escape).
func pathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/%", c) >= 0
}

// escapedPath re-joins validated raw segments: exactly what was checked.
func escapedPath(p string) string {
	return "/" + strings.TrimPrefix(p, "/")
}

// hasPrefix reports whether segs starts with the segments of prefix.
func hasPrefix(segs, prefix []string) bool {
	if len(prefix) > 0 && prefix[len(prefix)-1] == "" {
		prefix = prefix[:len(prefix)-1] // "/v1/" is "/v1"
	}
	if len(segs) < len(prefix) {
		return false
	}
	for i, p := range prefix {
		if segs[i] != p {
			return false
		}
	}
	return true
}

// Headers the agent may not send: airlock sets them (Host, the
// credential, framing), or they would let the agent speak for someone else
// (Cookie, Forwarded) or change how the response is encoded.
var forbiddenHeaders = map[string]bool{
	"Host": true, "Authorization": true, "Cookie": true, "Cookie2": true,
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Te": true, "Trailer": true,
	"Upgrade": true, "Content-Length": true, "Accept-Encoding": true, "Expect": true,
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	"X-Real-Ip": true, "X-Http-Method-Override": true, "X-Http-Method": true, "X-Method-Override": true,
}

// speakForHeaders name a client address, a host or a path for proxies and
// frameworks that trust them (X-Original-URL rewrites the path on IIS and
// old Symfony; True-Client-IP and friends pass allowlists).
var speakForHeaders = map[string]bool{
	"X-Original-Url": true, "X-Rewrite-Url": true, "X-Original-Uri": true, "X-Original-Host": true, "X-Host": true,
	"X-Http-Host-Override": true, "X-Forwarded": true, "Forwarded-For": true, "X-Client-Ip": true, "True-Client-Ip": true,
	"Client-Ip": true, "X-Cluster-Client-Ip": true, "Cf-Connecting-Ip": true, "Fastly-Client-Ip": true,
	"X-Originating-Ip": true, "X-Remote-Ip": true, "X-Remote-Addr": true, "X-Envoy-External-Address": true,
	"X-Envoy-Original-Path": true, "X-Original-Forwarded-For": true, "Via": true,
}

// methodOverrideKey reports whether a query parameter or body field names
// a method frameworks run instead of the request's (Rails, Laravel and
// Symfony read _method; Salesforce _HttpMethod).
func methodOverrideKey(k string) bool {
	switch strings.ToLower(strings.TrimSpace(k)) {
	case "_method", "_httpmethod", "_http_method", "x-http-method-override", "x-http-method", "x-method-override":
		return true
	}
	return false
}

func isHopByHop(canon string) bool {
	switch canon {
	case "Connection", "Keep-Alive", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Content-Length", "Proxy-Connection":
		return true
	}
	return strings.HasPrefix(canon, "Proxy-")
}

// agentHeaderRefused says why the agent may not send a header ("" if it may).
func agentHeaderRefused(canon string) string {
	switch {
	case strings.HasPrefix(canon, "Proxy-"):
		return "Proxy-* headers are never sent"
	case canon == "Authorization" || canon == "Cookie" || canon == "Cookie2":
		return "airlock authenticates requests itself; the credential is never the agent's"
	case canon == "Host":
		return "the host is the resource's and cannot be changed"
	case strings.HasSuffix(canon, "-Override") || canon == "X-Http-Method":
		return "the method is the one policy decided on"
	case canon == "Content-Encoding" || canon == "Content-Transfer-Encoding":
		return "the body policy sees must be the body the service reads, not an encoding of another one"
	case canon == "Range" || canon == "If-Range":
		return "a slice of a document cannot be masked field by field; ask the service for less with its own parameters"
	case strings.HasPrefix(canon, "X-Forwarded-") || speakForHeaders[canon]:
		return "it would let the agent speak for someone else (a client address, another host or path)"
	case forbiddenHeaders[canon]:
		return "airlock sets it itself"
	}
	return ""
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// checkHeader validates one header: a token name and a value without
// CR, LF, NUL or other control characters (tab allowed).
func checkHeader(name, value string) error {
	if !validHeaderName(name) {
		return fmt.Errorf("%q is not a header name", name)
	}
	if len(value) > maxHeaderValue {
		return fmt.Errorf("%s is %d bytes; at most %d", name, len(value), maxHeaderValue)
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return fmt.Errorf("the value of %s contains the control character %q (no CR, LF or NUL in headers)", name, c)
		}
	}
	return nil
}

// defaultResponseHeaders are shown to the agent whatever the resource
// adds; hiddenResponseHeaders never are.
var (
	defaultResponseHeaders = []string{"Content-Type", "Content-Length", "Location", "Retry-After", "Etag", "Last-Modified", "Link", "Www-Authenticate", "X-Request-Id"}
	hiddenResponseHeaders  = map[string]bool{"Set-Cookie": true, "Set-Cookie2": true, "Authorization": true, "Proxy-Authenticate": true, "Proxy-Authorization": true}
)

// contentTypeIsJSON reports whether a media type is JSON
// (application/json, application/problem+json, ...).
func contentTypeIsJSON(ct string) bool {
	mt := mediaType(ct)
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json"
}

func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// textual reports whether a media type is text airlock may return.
func textual(mt string) bool {
	switch {
	case strings.HasPrefix(mt, "text/"):
		return true
	case strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"), strings.HasSuffix(mt, "+yaml"):
		return true
	}
	switch mt {
	case "application/json", "application/xml", "application/yaml", "application/x-yaml", "application/javascript",
		"application/x-www-form-urlencoded", "application/x-ndjson", "application/jsonl", "application/graphql", "application/sql":
		return true
	}
	return false
}
