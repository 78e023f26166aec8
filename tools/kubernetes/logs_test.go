package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-mcp/airlock/masking"
	"github.com/airlock-mcp/airlock/tools"
)

// TestLogsErrorPaths runs kubectl_logs against the real API server alone
// (it has no kubelet): a pod that does not exist, one not scheduled, a
// container waiting to start, a pod with several containers and none
// named, and a caller RBAC refuses.
func TestLogsErrorPaths(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	viewer := f.mint(t, "viewer", f.alice)
	f.createPod(t, "pending", nil)

	waiting := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "waiting"},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}, {Name: "sidecar", Image: "busybox"}}},
	}
	p, err := f.k.Admin.CoreV1().Pods(f.ns).Create(ctx, waiting, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodPending
	p.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "app", Image: "nginx:1.27", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image \"nginx:1.27\""}}},
		{Name: "sidecar", Image: "busybox", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
	}
	if _, err := f.k.Admin.CoreV1().Pods(f.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, args string
		cred       *Credential
		is         error
		want       string
	}{
		{"no such pod", `"pod":"nope"`, viewer, ErrNotFound, `pods "nope" not found in namespace ` + f.ns},
		{"not scheduled", `"pod":"pending"`, viewer, ErrNoLog, "pod pending is not scheduled to a node yet (phase Pending), so container app has not run"},
		{"several containers", `"pod":"waiting"`, viewer, tools.ErrInvalidArguments, "pod waiting has 2 containers (app, sidecar); say which with container"},
		{"no such container", `"pod":"waiting","container":"db"`, viewer, ErrNotFound, `pod waiting has no container "db"; its containers are app, sidecar`},
		{"waiting", `"pod":"waiting","container":"app"`, viewer, ErrNoLog, `container app of pod waiting is not running: waiting (ImagePullBackOff): Back-off pulling image "nginx:1.27"`},
		{"no previous", `"pod":"waiting","container":"sidecar","previous":true`, viewer, ErrNoLog, "container sidecar of pod waiting has no previous instance"},
		{"forbidden", `"pod":"waiting","container":"app"`, f.mint(t, "asme", f.bob), ErrForbidden, `cannot get resource "pods/log"`},
	} {
		_, err := f.run(t, &Logs{}, tc.cred, testLimits, `{"resource":"test","namespace":"`+f.ns+`",`+tc.args+`}`)
		if !errors.Is(err, tc.is) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.is, tc.want)
		}
	}
}

// TestLogsDecode: the arguments kubectl_logs refuses.
func TestLogsDecode(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{`{"resource":"p"}`, "pod is required"},
		{`{"resource":"p","pod":"a","since":"yesterday"}`, `since "yesterday" is not a duration`},
		{`{"resource":"p","pod":"a","since":"-5m"}`, "is not a duration"},
		{`{"resource":"p","pod":"a","tail_lines":0}`, "tail_lines must be a whole number from 1"},
		{`{"resource":"p","pod":"a","container":"A/B"}`, "is not a container name"},
		{`{"resource":"p","pod":"../x"}`, "is not an object name"},
	} {
		_, err := (&Logs{}).Decode([]byte(tc.args))
		if !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s): %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestEventsDecode: the arguments kubectl_events refuses; a name cannot
// add terms to the field selector.
func TestEventsDecode(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{`{"resource":"p","name":"web"}`, "kind and name go together"},
		{`{"resource":"p","kind":"pod"}`, "kind and name go together"},
		{`{"resource":"p","all_namespaces":true,"namespace":"x"}`, "leave namespace out"},
		{`{"resource":"p","kind":"pod","name":"a,involvedObject.namespace=b"}`, "is not an object name"},
		{`{"resource":"p","limit":0}`, "limit must be a whole number"},
	} {
		_, err := (&Events{}).Decode([]byte(tc.args))
		if !errors.Is(err, tools.ErrInvalidArguments) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%s): %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestCutLog: the byte cap ends on a whole line.
func TestCutLog(t *testing.T) {
	text, cut := cutLog([]byte("one\ntwo\nthree\n"), 10)
	if text != "one\ntwo\n" || !cut {
		t.Errorf("cutLog = %q %v", text, cut)
	}
	text, cut = cutLog([]byte("one\n"), 10)
	if text != "one\n" || cut {
		t.Errorf("cutLog = %q %v", text, cut)
	}
}

// TestEventsDeduplicatedAndSorted lists a namespace's events: repeats of
// one (reason, object, message) are one row with their counts added, rows
// are newest last; one object's events; RBAC refusal.
func TestEventsDeduplicatedAndSorted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	add := func(name, kind, obj, typ, reason, msg string, count int32, at time.Duration) {
		t.Helper()
		_, err := f.k.Admin.CoreV1().Events(f.ns).Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name},
			InvolvedObject: corev1.ObjectReference{Kind: kind, Name: obj, Namespace: f.ns},
			Type:           typ, Reason: reason, Message: msg, Count: count,
			FirstTimestamp: metav1.NewTime(base), LastTimestamp: metav1.NewTime(base.Add(at)),
			Source: corev1.EventSource{Component: "kubelet"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	add("a1", "Pod", "api-1", "Warning", "BackOff", "Back-off restarting failed container", 5, 10*time.Minute)
	add("a2", "Pod", "api-1", "Warning", "BackOff", "Back-off restarting failed container", 2, 30*time.Minute)
	add("b1", "Pod", "api-2", "Normal", "Scheduled", "Successfully assigned to node-1", 1, 5*time.Minute)
	add("c1", "Deployment", "api", "Normal", "ScalingReplicaSet", "Scaled up replica set api-7d to 2", 1, 20*time.Minute)

	viewer := f.mint(t, "viewer", f.alice)
	out, err := f.run(t, &Events{}, viewer, testLimits, `{"resource":"test","namespace":"`+f.ns+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out.Table.Rows {
		got = append(got, fmt.Sprintf("%v %v %v x%v", r[1], r[2], r[3], r[4]))
	}
	want := []string{"Normal Scheduled pod/api-2 x1", "Normal ScalingReplicaSet deployment/api x1", "Warning BackOff pod/api-1 x7"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("rows %v, want %v", got, want)
	}
	if out.Table.Rows[2][0] != base.Add(30*time.Minute).UTC().Format(time.RFC3339) {
		t.Errorf("last seen of the BackOff group %v, want the newest occurrence", out.Table.Rows[2][0])
	}
	_, text := (&Events{}).Render(out)
	mustContain(t, "events text", text, "LAST SEEN", "REASON", "Back-off restarting failed container")

	one, err := f.run(t, &Events{}, viewer, testLimits, `{"resource":"test","namespace":"`+f.ns+`","kind":"deploy","name":"api"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Table.Rows) != 1 || one.Table.Rows[0][3] != "deployment/api" {
		t.Errorf("events of deployment api: %v", one.Table.Rows)
	}
	limited, err := f.run(t, &Events{}, viewer, testLimits, `{"resource":"test","namespace":"`+f.ns+`","limit":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(limited.Table.Rows) != 1 || limited.Table.Rows[0][2] != "BackOff" || !limited.Truncated || !strings.Contains(limited.Notice, "2 older event groups not shown") {
		t.Errorf("limit 1: %v %q", limited.Table.Rows, limited.Notice)
	}

	_, err = f.run(t, &Events{}, f.mint(t, "asme", f.bob), testLimits, `{"resource":"test","namespace":"`+f.ns+`"}`)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("events as bob: %v, want ErrForbidden", err)
	}
}

// runningPod creates a pod on node with one running container "app".
func (f *fixture) runningPod(t *testing.T, name, node string) {
	t.Helper()
	ctx := context.Background()
	p, err := f.k.Admin.CoreV1().Pods(f.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: "nginx:1.27", Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
	if _, err := f.k.Admin.CoreV1().Pods(f.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestLogsThroughTheAPIServer reads a log the way a cluster serves it: the
// API server authenticates the lease's token, authorizes pods/log by RBAC,
// finds the pod's node and proxies to its kubelet. The kubelet is the one
// stand-in (testenv.StartKubelet: TLS verified by the API server, the API
// server's client certificate verified by it). The log is masked by the
// broker's masker (a token in a line is replaced) and capped in bytes on a
// whole line, with a notice.
func TestLogsThroughTheAPIServer(t *testing.T) {
	f := newFixture(t)
	kl := f.k.StartKubelet(t)
	f.runningPod(t, "api-1", kl.NodeName)
	var lines []string
	for i := 1; i <= 40; i++ {
		lines = append(lines, fmt.Sprintf("2026-12-01T10:00:%02dZ GET /orders/%d 200", i, i))
	}
	lines[19] = "2026-12-01T10:00:20Z auth with token ghp_abcdefghijklmnopqrstuvwxyz0123456789 failed"
	kl.SetLog(f.ns, "api-1", "app", strings.Join(lines, "\n")+"\n")
	viewer := f.mint(t, "viewer", f.alice)
	args := `{"resource":"test","namespace":"` + f.ns + `","pod":"api-1","tail_lines":25}`

	// The viewer's Role grants pods, not pods/log: RBAC refuses, and the
	// kubelet is never asked.
	if _, err := f.run(t, &Logs{}, viewer, testLimits, args); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), `cannot get resource "pods/log"`) {
		t.Fatalf("logs without pods/log: %v, want ErrForbidden", err)
	}
	if n := len(kl.Requests()); n != 0 {
		t.Fatalf("a refused call reached the kubelet %d times", n)
	}
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

	res, text := f.maskedLogs(t, viewer, testLimits, args)
	if res.Container != "app" || res.Lines != 25 || res.Truncated {
		t.Errorf("result %+v", res)
	}
	mustContain(t, "log", text, "GET /orders/16 200", "GET /orders/40 200", "auth with token")
	mustNotContain(t, "log", text, "GET /orders/15 200", "ghp_abcdefghijklmnopqrstuvwxyz0123456789")
	reqs := kl.Requests()
	if len(reqs) != 1 || reqs[0].Path != "/containerLogs/"+f.ns+"/api-1/app" || reqs[0].Query.Get("tailLines") != "25" || reqs[0].ClientCN != "kube-apiserver-kubelet-client" {
		t.Errorf("kubelet requests %+v", reqs)
	}

	small := testLimits
	small.MaxBytes = 100
	res, text = f.maskedLogs(t, viewer, small, `{"resource":"test","namespace":"`+f.ns+`","pod":"api-1"}`)
	if !res.Truncated || res.Lines != 2 || !strings.HasSuffix(res.Log, "GET /orders/2 200\n") {
		t.Errorf("capped log %+v", res)
	}
	mustContain(t, "capped log", text, "log cut at 100 bytes", "narrow with tail_lines or since")
	if got := kl.Requests()[1].Query.Get("limitBytes"); got != "101" {
		t.Errorf("limitBytes passed to the kubelet = %q, want 101", got)
	}

	// Bob may read nothing.
	_, err := f.run(t, &Logs{}, f.mint(t, "asme", f.bob), testLimits, args)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("logs as bob: %v", err)
	}
	if len(kl.Requests()) != 2 {
		t.Errorf("a refused call reached the kubelet: %+v", kl.Requests())
	}
}

// maskedLogs runs kubectl_logs and masks its stream as the broker does
// (the default profile's text masker), then renders it.
func (f *fixture) maskedLogs(t *testing.T, cred *Credential, limits tools.Limits, args string) (*LogsResult, string) {
	t.Helper()
	out, err := f.run(t, &Logs{}, cred, limits, args)
	if err != nil {
		t.Fatalf("kubectl_logs %s: %v", args, err)
	}
	eng, err := masking.New(masking.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := eng.Profile("default")
	out.Streams.Stdout, _, err = p.MaskText(out.Streams.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	res, text := (&Logs{}).Render(out)
	return res.(*LogsResult), text
}
