package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

// A case file may name its config and policy; both resolve against the case
// file's directory, whatever the working directory.
func TestParseCaseFileHeader(t *testing.T) {
	data := []byte(`config: ../kubernetes/airlock.yaml
policy: kubernetes.yaml
cases:
  - name: a
    tool: kubectl_get
    resource: prod
    expect: {effect: refused, reason: "x"}
`)
	f, err := ParseCaseFile(data, filepath.Join("examples", "policies", "k.cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("examples", "kubernetes", "airlock.yaml"); f.Config != want {
		t.Errorf("config = %q, want %q", f.Config, want)
	}
	if want := filepath.Join("examples", "policies", "kubernetes.yaml"); f.Policy != want {
		t.Errorf("policy = %q, want %q", f.Policy, want)
	}
	if len(f.Cases) != 1 || f.Cases[0].Expect.Effect != CaseRefused {
		t.Errorf("cases = %+v", f.Cases)
	}
	abs, err := ParseCaseFile([]byte("policy: /etc/airlock/policy.yaml\ncases:\n  - {name: a, tool: t, expect: {effect: deny}}\n"), "c.yaml")
	if err != nil || abs.Policy != "/etc/airlock/policy.yaml" || abs.Config != "" {
		t.Errorf("absolute policy: %+v, %v", abs, err)
	}
	// ParseCases reads the same files and ignores the header.
	if cases, err := ParseCases(data, "k.cases.yaml"); err != nil || len(cases) != 1 {
		t.Errorf("ParseCases: %v, %v", cases, err)
	}
	for _, bad := range []string{"policy: [a, b]\ncases: []\n", "config:\ncases: []\n"} {
		if _, err := ParseCaseFile([]byte(bad), "c.yaml"); err == nil || !strings.Contains(err.Error(), "must be a path") {
			t.Errorf("%q: want an error saying it must be a path, got %v", bad, err)
		}
	}
}
