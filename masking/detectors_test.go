package masking

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// detectorCases are each detector's own tests: inputs masked by the "all"
// profile and the expected output. Every built-in has an entry
// (TestEveryDetectorHasCases).
var detectorCases = map[string][]struct{ in, want string }{
	"email": {
		{"mail john.doe+x@example.com now", "mail [EMAIL] now"},
		{"<a@b.example.org>.", "<[EMAIL]>."},
		{"end with dot: x_y@mail.example.io.", "end with dot: [EMAIL]."},
		{"user@localhost and @media and me@host", "user@localhost and @media and me@host"},
		{"pkg@1.2.3", "pkg@1.2.3"},
	},
	"phone": {
		{"call (415) 555-2671 now", "call [PHONE] now"},
		{"tel 415-555-2671, 212.555.0188", "tel [PHONE], [PHONE]"},
		{"+1 415 555 2671 / +14155552671", "[PHONE] / [PHONE]"},
		{"intl +44 20 7946 0958 and +49 30 12345678", "intl [PHONE] and [PHONE]"},
		{"1-415-555-2671", "[PHONE]"},
		{"value (818-616-3483) and [212-555-0188]", "value ([PHONE]) and [[PHONE]]"},
		{"bad 123-456-7890 and 4155552671 (bare) and +1 123 456 7890", "bad 123-456-7890 and 4155552671 (bare) and +1 123 456 7890"},
	},
	"payment_card": {
		{"visa 4111 1111 1111 1111.", "visa [PAYMENT_CARD]."},
		{"mc 5555-5555-5555-4444 amex 378282246310005", "mc [PAYMENT_CARD] amex [PAYMENT_CARD]"},
		{"amex 3782 822463 10005 diners 3056 930902 5904", "amex [PAYMENT_CARD] diners [PAYMENT_CARD]"},
		{"mc2 2223003122003222 jcb 3530111333300000 disc 6011111111111117", "mc2 [PAYMENT_CARD] jcb [PAYMENT_CARD] disc [PAYMENT_CARD]"},
		{"luhn fails 4111 1111 1111 1112", "luhn fails 4111 1111 1111 1112"},
		{"mixed seps 4111 1111-1111 1111, no issuer 9111111111111111", "mixed seps 4111 1111-1111 1111, no issuer 9111111111111111"},
		{"uuid-ish 3854-205349866372 x4111111111111111", "uuid-ish 3854-205349866372 x4111111111111111"},
		{"17 digits 38878355048967050", "17 digits 38878355048967050"},
	},
	"us_ssn": {
		{"ssn 123-45-6789", "ssn [US_SSN]"},
		{"ssn 123 45 6789;", "ssn [US_SSN];"},
		{"SSN: 123456789", "SSN: [US_SSN]"},
		{"order 123456789 000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000", "order 123456789 000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000"},
	},
	"iban": {
		{"iban DE89 3704 0044 0532 0130 00 ok", "iban [IBAN] ok"},
		{"GB82WEST12345698765432", "[IBAN]"},
		{"bad DE89 3704 0044 0532 0130 01 / XX89370400440532013000", "bad DE89 3704 0044 0532 0130 01 / XX89370400440532013000"},
	},
	"ipv4": {
		{"from 192.168.1.20:5432", "from [IPV4]:5432"},
		{"x=10.0.0.1, y=8.8.8.8.", "x=[IPV4], y=[IPV4]."},
		{"0.0.0.0. 0.0.0.0 1.1.1.1.2", "[IPV4]. [IPV4] 1.1.1.1.2"},
		{"version 1.2.3.4 v1.2.3.4 1.2.3.4.5 999.1.1.1 01.02.03.04", "version 1.2.3.4 v1.2.3.4 1.2.3.4.5 999.1.1.1 01.02.03.04"},
	},
	"ipv6": {
		{"addr 2001:db8::1 and [fe80::1:2]:80", "addr [IPV6] and [[IPV6]]:80"},
		{"2a00:1450:4001:82b::200e.", "[IPV6]."},
		{"time 10:23:45 mac 00:1a:2b:3c:4d:5e std::vector a::b", "time 10:23:45 mac 00:1a:2b:3c:4d:5e std::vector a::b"},
	},
	"jwt": {
		{"t=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.sig_-x", "t=[JWT]"},
		{"no alg eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig", "no alg eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig"},
	},
	"private_key": {
		{"k: -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nnext", "k: [PRIVATE_KEY]\nnext"},
		{`"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----"`, `"[PRIVATE_KEY]"`},
		{"cut -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE", "cut [PRIVATE_KEY]"},
		{"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
	},
	"aws_access_key": {
		{"id AKIAIOSFODNN7EXAMPLE,", "id [AWS_ACCESS_KEY],"},
		{"ASIAY34FZKBOKMUTVV7A", "[AWS_ACCESS_KEY]"},
		{"AKIAshort XAKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX", "AKIAshort XAKIAIOSFODNN7EXAMPLE AKIAIOSFODNN7EXAMPLEX"},
	},
	"aws_secret_key": {
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = [AWS_SECRET_KEY]"},
		{`"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"`, `"SecretAccessKey": "[AWS_SECRET_KEY]"`},
		{"no keyword wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "no keyword wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"secret sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709", "secret sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709"},
	},
	"github_token": {
		{"GH=ghp_1234567890abcdefghijABCDEFGHIJ123456", "GH=[GITHUB_TOKEN]"},
		{"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[GITHUB_TOKEN]"},
		{"ghp_short xghp_1234567890abcdefghijABCDEFGHIJ123456", "ghp_short xghp_1234567890abcdefghijABCDEFGHIJ123456"},
	},
	"gitlab_token": {
		{"glpat-abcdefghij0123456789 ok", "[GITLAB_TOKEN] ok"},
		{"glpat-short", "glpat-short"},
	},
	"slack_token": {
		{"xoxb-123456789012-1234567890123-abcdefABCDEF", "[SLACK_TOKEN]"},
		{"xoxz-123456789012 xoxb-1", "xoxz-123456789012 xoxb-1"},
	},
	"stripe_key": {
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc rk_live_abcdefghijklmnop sk_test_abcdefghijklmnop", "[STRIPE_KEY] [STRIPE_KEY] [STRIPE_KEY]"},
		{"pk_live_abcdefghijklmnopqrst rk_test_abcdefghijklmnop sk_live_x", "pk_live_abcdefghijklmnopqrst rk_test_abcdefghijklmnop sk_live_x"},
	},
	"google_api_key": {
		{"key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe&x", "key=[GOOGLE_API_KEY]&x"},
		{"AIzaShort AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQeTOOLONG", "AIzaShort AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQeTOOLONG"},
	},
	"url_password": {
		{"postgres://u:secret@h/db", "postgres://u:[URL_PASSWORD]@h/db"},
		{"smtp://me@example.com:pw@mail.example.com", "smtp://[URL_PASSWORD]@mail.example.com"},
		{"host=db user=app password=hunter2 dbname=x", "host=db user=app password=[URL_PASSWORD] dbname=x"},
		{"Server=x;Pwd=p@ss;Database=y", "Server=x;Pwd=[URL_PASSWORD];Database=y"},
		{`{"password": "s3cret", "user": "a"}`, `{"password": "[URL_PASSWORD]", "user": "a"}`},
		{"PGPASSWORD='two words' psql", "PGPASSWORD='[URL_PASSWORD]' psql"},
		{"https://example.com/a:b@c https://user@host password_hint=x", "https://example.com/a:b@c https://user@host password_hint=x"},
	},
	"bearer_token": {
		{"Authorization: Bearer abc.DEF-123_456", "Authorization: Bearer [BEARER_TOKEN]"},
		{"authorization: bearer dGVzdHRva2VuMTIz==\r\n", "authorization: bearer [BEARER_TOKEN]\r\n"},
		{"the bearer of bad news; Bearer authentication", "the bearer of bad news; Bearer authentication"},
	},
}

func TestDetectors(t *testing.T) {
	p := allProfile(t, ReplaceRedact)
	for name, cases := range detectorCases {
		t.Run(name, func(t *testing.T) {
			for _, c := range cases {
				got, _, err := p.MaskText(c.in)
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("MaskText(%q)\n got %q\nwant %q", c.in, got, c.want)
				}
				again, _, _ := p.MaskText(got)
				if again != got {
					t.Errorf("not idempotent: %q -> %q", got, again)
				}
			}
		})
	}
}

func TestEveryDetectorHasCases(t *testing.T) {
	for _, b := range builtins {
		if len(detectorCases[b.name]) < 2 {
			t.Errorf("detector %s needs positive and negative cases", b.name)
		}
		if valueGens[b.name] == nil {
			t.Errorf("detector %s has no corpus generator", b.name)
		}
		if b.naive == "" {
			t.Errorf("detector %s has no naive pattern for the baseline", b.name)
		}
	}
	var names []string
	for _, b := range builtins {
		names = append(names, b.name)
	}
	for _, d := range DefaultConfig().Profiles["pii"].Detectors {
		if !slices.Contains(names, d) {
			t.Errorf("pii profile names unknown detector %s", d)
		}
	}
}

// Only the enabled detectors run.
func TestProfileSelectsDetectors(t *testing.T) {
	e, err := New(Config{Profiles: map[string]ProfileConfig{"mail": {Detectors: []string{"email"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.Profile("mail")
	got, c, _ := p.MaskText("a@example.com 4111111111111111 AKIAIOSFODNN7EXAMPLE")
	if got != "[EMAIL] 4111111111111111 AKIAIOSFODNN7EXAMPLE" || c["email"] != 1 || len(c) != 1 {
		t.Errorf("got %q %v", got, c)
	}
}

// docs/masking.md documents every detector.
func TestDocsListEveryDetector(t *testing.T) {
	doc, err := os.ReadFile("../docs/masking.md")
	if err != nil {
		t.Fatalf("reading the masking docs: %v", err)
	}
	for _, b := range builtins {
		if !strings.Contains(string(doc), "| `"+b.name+"` |") {
			t.Errorf("docs/masking.md has no row for %s", b.name)
		}
	}
}
