package masking

// detectorID names a built-in detector inside the scanner. The table below is
// the source of truth; IDs only let the scanner test "is it enabled" cheaply.
type detectorID uint8

const (
	detEmail detectorID = iota
	detPhone
	detPaymentCard
	detUSSSN
	detIBAN
	detIPv4
	detIPv6
	detJWT
	detPrivateKey
	detAWSAccessKey
	detAWSSecretKey
	detGitHubToken
	detGitLabToken
	detSlackToken
	detStripeKey
	detGoogleAPIKey
	detURLPassword
	detBearerToken
	numBuiltins
)

// builtin describes one built-in detector. The matching code lives in scan.go
// (one function per detector); anchors are the bytes that wake the scanner.
type builtin struct {
	id      detectorID
	name    string
	what    string
	rule    string // the confidence rule, as documented in docs/masking.md
	anchors string // bytes the single-pass scanner stops at for this detector
	partial bool   // `replace: partial` keeps the last 4 digits
	// naive is an unanchored regular expression for the same thing. It is used
	// only by the baseline benchmark (the "run every regex" design this package
	// replaces) and is deliberately simple.
	naive string
}

const digits = "0123456789"

var builtins = []builtin{
	{id: detEmail, name: "email", what: "e-mail address",
		rule: "local part [A-Za-z0-9._%+-]{1,64}, '@', ≥2 DNS labels, alphabetic TLD of ≥2 letters", anchors: "@",
		naive: `[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}`},
	{id: detPhone, name: "phone", what: "phone number: +CC international, or US (NPA) NXX-XXXX / NPA-NXX-XXXX / NPA.NXX.XXXX / 1-NPA-NXX-XXXX",
		rule: "shape, then github.com/nyaruka/phonenumbers IsValidNumber (region US when no +CC)", anchors: digits, partial: true,
		naive: `\+?\d{1,3}?[ .-]?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}`},
	{id: detPaymentCard, name: "payment_card", what: "payment card number, 13-19 digits, optional uniform space/dash separators",
		rule: "Luhn checksum + issuer prefix and issued length: Visa 4 (13/16/19), Mastercard 51-55, 2221-2720 (16), Amex 34/37 (15), Discover 6011/644-649/65/622126-622925 (16/19), JCB 3528-3589 (16/19), Diners 300-305/3095/36/38/39 (14/16); printed layouts 4-4-4-4(-3), 4-6-5, 4-6-4", anchors: digits, partial: true,
		naive: `\b(?:\d[ -]?){12,18}\d\b`},
	{id: detUSSSN, name: "us_ssn", what: "US social security number ddd-dd-dddd / ddd dd dddd (bare 9 digits only after an \"ssn\" keyword)",
		rule: "area not 000/666/9xx, group not 00, serial not 0000", anchors: digits,
		naive: `\b\d{3}[- ]\d{2}[- ]\d{4}\b`},
	{id: detIBAN, name: "iban", what: "IBAN, compact or in groups of 4",
		rule: "country code with its registered length, mod-97 check digits", anchors: digits,
		naive: `\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b`},
	{id: detIPv4, name: "ipv4", what: "IPv4 address (not a 4-part version string: see docs)",
		rule: "net/netip parses it; not after v/V or a \"version\" keyword", anchors: digits,
		naive: `\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`},
	{id: detIPv6, name: "ipv6", what: "IPv6 address",
		rule: "net/netip parses it as IPv6; ≥2 colons and a digit", anchors: ":",
		naive: `\b[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b`},
	{id: detJWT, name: "jwt", what: "JSON Web Token",
		rule: "three base64url parts; the header decodes to a JSON object with \"alg\"", anchors: "J",
		naive: `eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`},
	{id: detPrivateKey, name: "private_key", what: "PEM private key block (RSA, EC, DSA, OPENSSH, PKCS#8, encrypted, PGP); a key body without its BEGIN/END lines (OpenSSH, PKCS#1, PKCS#8 plain or encrypted, SEC1, DSA)",
		rule: "-----BEGIN …PRIVATE KEY…----- header; the whole block up to its END line (or to the end of input). Without armour: a base64 block that starts at a line or value with b3BlbnNzaC1rZXktdjEA (\"openssh-key-v1\\0\"), or whose DER decodes to SEQUENCE { INTEGER 0|1, INTEGER of ≥64 bytes | AlgorithmIdentifier, OCTET STRING | OCTET STRING } or SEQUENCE { password-based encryption AlgorithmIdentifier, OCTET STRING }; to the length its DER or OpenSSH header gives, or the end of the block; a block longer than 8 KB to the next END line or the end of input", anchors: "-Mb",
		naive: `-----BEGIN[ A-Z]*PRIVATE KEY[ A-Z]*-----[\s\S]*?-----END[ A-Z]*PRIVATE KEY[ A-Z]*-----|(?m:^(?:b3BlbnNzaC1rZXktdjEA|M[C-I])[A-Za-z0-9+/]{62}[A-Za-z0-9+/=\r\n]*)`},
	{id: detAWSAccessKey, name: "aws_access_key", what: "AWS access key id",
		rule: "AKIA or ASIA + 16 [A-Z0-9], token boundaries", anchors: "A",
		naive: `\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`},
	{id: detAWSSecretKey, name: "aws_secret_key", what: "AWS secret access key",
		rule: "exactly 40 base64 chars, mixed case, not hex, within 100 bytes after an \"aws\" or \"secret\" keyword, or, without the keyword, in the shape of a credentials file line: alone on its line (not the last line of a wrapped base64 block, not before a PEM END line), or ending a `name = …` / `name: …` line", anchors: "\n=:",
		naive: `(?i)(?:aws|secret)[\s\S]{0,100}?\b[A-Za-z0-9/+]{40}\b|(?m:^[ \t]*(?:[\w.-]*[ \t]*[=:][ \t]*)?[A-Za-z0-9/+]{40}[ \t\r]*$)`},
	{id: detGitHubToken, name: "github_token", what: "GitHub token",
		rule: "ghp_/gho_/ghu_/ghs_/ghr_ + ≥20 [A-Za-z0-9], or github_pat_ + ≥20 [A-Za-z0-9_]", anchors: "_",
		naive: `\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})`},
	{id: detGitLabToken, name: "gitlab_token", what: "GitLab personal access token",
		rule: "glpat- + ≥20 [A-Za-z0-9_-]", anchors: "-",
		naive: `\bglpat-[A-Za-z0-9_-]{20,}`},
	{id: detSlackToken, name: "slack_token", what: "Slack token",
		rule: "xoxb-/xoxa-/xoxp-/xoxr-/xoxs- + ≥10 [A-Za-z0-9-]", anchors: "-",
		naive: `\bxox[baprs]-[A-Za-z0-9-]{10,}`},
	{id: detStripeKey, name: "stripe_key", what: "Stripe secret or restricted key",
		rule: "sk_live_/rk_live_/sk_test_ + ≥16 [A-Za-z0-9]", anchors: "_",
		naive: `\b(?:sk_live|rk_live|sk_test)_[A-Za-z0-9]{16,}`},
	{id: detGoogleAPIKey, name: "google_api_key", what: "Google API key",
		rule: "AIza + exactly 35 [A-Za-z0-9_-]", anchors: "A",
		naive: `\bAIza[A-Za-z0-9_-]{35}\b`},
	{id: detURLPassword, name: "url_password", what: "password in a URL or connection string (only the password is masked)",
		rule: "scheme://user:PASSWORD@host, or password=/passwd=/pwd= (also \"password\": in JSON)", anchors: ":=",
		naive: `://[^:/@\s]*:([^@/\s]+)@|(?i)(?:password|passwd|pwd)\s*=\s*[^\s;&]+`},
	{id: detBearerToken, name: "bearer_token", what: "bearer token value (Authorization: Bearer …)",
		rule: "\"Bearer\" (any case) + space + ≥8 token68 chars, not all lowercase letters", anchors: "Bb",
		naive: `(?i)\bbearer\s+[A-Za-z0-9._~+/-]+=*`},
}

// builtinByName and builtinByID index the table; built once from it.
var (
	builtinByName = map[string]*builtin{}
	builtinByID   [numBuiltins]*builtin
)

func init() {
	for i := range builtins {
		b := &builtins[i]
		if builtinByName[b.name] != nil || builtinByID[b.id] != nil {
			panic("masking: duplicate built-in detector " + b.name)
		}
		builtinByName[b.name] = b
		builtinByID[b.id] = b
	}
	for id, b := range builtinByID {
		if b == nil {
			panic("masking: built-in detector id " + string(rune('0'+id)) + " has no table entry")
		}
	}
}
