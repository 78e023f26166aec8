package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/tools"
)

// kubectl_logs: one container's log, through the API server's pods/log
// subresource (the API server authenticates and authorizes the call, then
// proxies it to the node's kubelet).
//
//	Decode   {resource, pod, namespace?, container?, tail_lines?, since?,
//	         previous?} → *LogsArgs; since is a Go duration (5m, 1h30m)
//	Facts    verb get, resource pods, subresource log, name = the pod,
//	         container as given
//	Execute  read the pod first (when the grant may): pick the container
//	         (the only one; with several, container is required: kubectl's
//	         default-container annotation is not followed, policy could not
//	         see the container it names) and
//	         say plainly when there can be no log (not scheduled, waiting,
//	         no previous instance); then GET .../log with limitBytes = the
//	         byte cap + 1, cut at the last whole line within the cap
//	Render   the log text (masked by the broker's text masker, whose
//	         detectors read every line) and a notice when it was cut

// Bounds of kubectl_logs.
const (
	// MaxTailLines bounds tail_lines.
	MaxTailLines = 100000
	// maxSince bounds since.
	maxSince = 30 * 24 * time.Hour
	// defaultLogBytes is the byte cap when the limits carry none.
	defaultLogBytes = 1 << 20
)

var (
	_ tools.Tool = (*Logs)(nil)
	_ tools.Args = (*LogsArgs)(nil)
)

// Logs is kubectl_logs.
type Logs struct{}

// LogsArgs are kubectl_logs' decoded arguments.
type LogsArgs struct {
	Resource  string `json:"resource"`
	Pod       string `json:"pod"`
	Namespace string `json:"namespace,omitempty"`
	Container string `json:"container,omitempty"`
	TailLines int    `json:"tail_lines,omitempty"`
	Since     string `json:"since,omitempty"`
	Previous  bool   `json:"previous,omitempty"`

	since time.Duration
}

func (a *LogsArgs) ResourceName() string       { return a.Resource }
func (a *LogsArgs) Canonical() json.RawMessage { return canonical(a) }

func (*Logs) Name() string   { return "kubectl_logs" }
func (*Logs) Kind() string   { return KindName }
func (*Logs) ReadOnly() bool { return true }

func (*Logs) Description() string {
	return `Read a container's log through Airlock, like "kubectl logs POD -c CONTAINER -n NAMESPACE".
Give the pod's name; container is needed only when the pod has several (the error lists them). Prefer tail_lines (the last N lines) or since (e.g. 10m, 2h) to reading everything; previous reads the log of the container's previous, crashed instance (after a restart).
The log is capped in bytes: when it is cut you are told, and should narrow with tail_lines or since. Secrets in log lines come back masked.`
}

func (*Logs) InputSchema() json.RawMessage {
	return json.RawMessage(`{
  "type": "object",
  "properties": {
    "resource": {"type": "string", "minLength": 1, "description": "Name of the Kubernetes cluster, as configured in Airlock (list_resources shows the ones you may use)."},
    "pod": {"type": "string", "minLength": 1, "description": "The pod's name."},
    "namespace": {"type": "string", "description": "The pod's namespace; default when left out."},
    "container": {"type": "string", "description": "The container; needed only when the pod has several."},
    "tail_lines": {"type": "integer", "minimum": 1, "maximum": 100000, "description": "Only the last N lines."},
    "since": {"type": "string", "description": "Only lines newer than this, as a duration: 30s, 10m, 2h."},
    "previous": {"type": "boolean", "description": "The log of the previous instance of the container (after it restarted)."}
  },
  "required": ["resource", "pod"],
  "additionalProperties": false
}`)
}

// Decode validates kubectl_logs' arguments.
func (*Logs) Decode(raw json.RawMessage) (tools.Args, error) {
	d, err := newDecoder("kubectl_logs", raw, []string{"resource", "pod", "namespace", "container", "tail_lines", "since", "previous"})
	if err != nil {
		return nil, err
	}
	a := &LogsArgs{}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"resource", &a.Resource}, {"pod", &a.Pod}, {"namespace", &a.Namespace}, {"container", &a.Container}, {"since", &a.Since}} {
		if err := d.str(f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if err := d.integer("tail_lines", &a.TailLines, 1, MaxTailLines); err != nil {
		return nil, err
	}
	if err := d.boolean("previous", &a.Previous); err != nil {
		return nil, err
	}
	if err := checkCommon(a.Resource, "pods", a.Namespace, a.Pod); err != nil {
		return nil, err
	}
	if a.Pod == "" {
		return nil, invalid("pod is required: the name of the pod whose log to read")
	}
	if a.Container != "" && !validName(a.Container) {
		return nil, invalid("container %q is not a container name", a.Container)
	}
	if a.Since != "" {
		a.since, err = time.ParseDuration(a.Since)
		if err != nil || a.since <= 0 || a.since > maxSince {
			return nil, invalid("since %q is not a duration from 1s to 720h, e.g. 10m or 2h", a.Since)
		}
	}
	return a, nil
}

// validName is a DNS-1123 label, as container names are.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1
		if !ok {
			return false
		}
	}
	return true
}

// Facts: a get of the pods/log subresource.
func (*Logs) Facts(args tools.Args) (policy.Facts, error) {
	a, ok := args.(*LogsArgs)
	if !ok {
		return policy.Facts{}, fmt.Errorf("kubectl_logs: unexpected arguments %T", args)
	}
	f := kindFacts("pods")
	f.Verb, f.Name, f.Subresource, f.Container = "get", a.Pod, "log", a.Container
	f.Namespace = effectiveNamespace("pods", a.Namespace, false)
	return policy.Facts{K8s: &f}, nil
}

// podForLogs is what kubectl_logs reads of the pod.
type podForLogs struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		NodeName       string                  `json:"nodeName"`
		Containers     []struct{ Name string } `json:"containers"`
		InitContainers []struct{ Name string } `json:"initContainers"`
	} `json:"spec"`
	Status struct {
		Phase             string            `json:"phase"`
		ContainerStatuses []containerStatus `json:"containerStatuses"`
		InitStatuses      []containerStatus `json:"initContainerStatuses"`
	} `json:"status"`
}

type containerStatus struct {
	Name         string `json:"name"`
	RestartCount int    `json:"restartCount"`
	State        struct {
		Waiting *struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"waiting"`
	} `json:"state"`
	LastState struct {
		Terminated *struct {
			Reason string `json:"reason"`
		} `json:"terminated"`
	} `json:"lastState"`
}

// checkPod picks the container and explains why there can be no log. It
// returns the container to read ("" to leave it to the API server).
func checkPod(a *LogsArgs, p *podForLogs) (string, error) {
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	var initNames []string
	for _, c := range p.Spec.InitContainers {
		initNames = append(initNames, c.Name)
	}
	container := a.Container
	switch {
	case container != "":
		if !slices.Contains(names, container) && !slices.Contains(initNames, container) {
			return "", fmt.Errorf("%w: pod %s has no container %q; its containers are %s", ErrNotFound, a.Pod, container, strings.Join(append(names, initNames...), ", "))
		}
	case len(names) == 1:
		container = names[0]
	case len(names) > 1:
		// Not kubectl's default-container annotation: whoever made the
		// pod chose it, and policy (k8s.container empty) would not see
		// which container is read.
		return "", invalid("pod %s has %d containers (%s); say which with container", a.Pod, len(names), strings.Join(names, ", "))
	}
	if p.Spec.NodeName == "" {
		return "", fmt.Errorf("%w: pod %s is not scheduled to a node yet (phase %s), so container %s has not run and has no log", ErrNoLog, a.Pod, orUnknown(p.Status.Phase), container)
	}
	for _, st := range append(p.Status.ContainerStatuses, p.Status.InitStatuses...) {
		if st.Name != container {
			continue
		}
		if a.Previous {
			if st.LastState.Terminated == nil {
				return "", fmt.Errorf("%w: container %s of pod %s has no previous instance (restarts: %d); leave out previous", ErrNoLog, container, a.Pod, st.RestartCount)
			}
			return container, nil
		}
		if w := st.State.Waiting; w != nil && st.RestartCount == 0 {
			detail := ""
			if w.Message != "" {
				detail = ": " + oneLine(w.Message)
			}
			return "", fmt.Errorf("%w: container %s of pod %s is not running: waiting (%s)%s", ErrNoLog, container, a.Pod, orUnknown(w.Reason), detail)
		}
	}
	return container, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Execute reads the log.
func (*Logs) Execute(ctx context.Context, target tools.Target, args tools.Args) (*tools.Output, error) {
	a, ok := args.(*LogsArgs)
	if !ok {
		return nil, fmt.Errorf("kubectl_logs: unexpected arguments %T: %w", args, tools.ErrInvalidArguments)
	}
	start := time.Now()
	ctx, cancel, c, m, err := begin(ctx, "kubectl_logs", target, "pods")
	if err != nil {
		return nil, err
	}
	defer cancel()
	ns := namespaceFor(m, a.Namespace, false)
	path := objectPath(m, ns, a.Pod)
	container := a.Container
	body, err := c.client.do(ctx, http.MethodGet, path, nil, acceptJSON, nil, maxResponse)
	switch {
	case err == nil:
		var p podForLogs
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, fmt.Errorf("kubectl_logs: reading the pod: %w", err)
		}
		if container, err = checkPod(a, &p); err != nil {
			return nil, err
		}
	case errors.Is(describeAPIError(err), ErrForbidden):
		// The grant may read logs without reading pods: the API server
		// says the rest.
	default:
		return nil, c.requestError(ctx, err, m, ns, a.Pod)
	}

	capBytes := c.limits.MaxBytes
	if capBytes <= 0 {
		capBytes = defaultLogBytes
	}
	q := url.Values{"limitBytes": {strconv.FormatInt(capBytes+1, 10)}}
	if container != "" {
		q.Set("container", container)
	}
	if a.TailLines > 0 {
		q.Set("tailLines", strconv.Itoa(a.TailLines))
	}
	if a.since > 0 {
		q.Set("sinceSeconds", strconv.FormatInt(int64((a.since+time.Second-1)/time.Second), 10))
	}
	if a.Previous {
		q.Set("previous", "true")
	}
	logBody, err := c.client.do(ctx, http.MethodGet, path+"/log", q, "text/plain, */*", nil, capBytes+1)
	if err != nil {
		mapped := c.requestError(ctx, err, m, ns, a.Pod)
		if errors.Is(mapped, tools.ErrInvalidArguments) && !errors.Is(mapped, ErrNotFound) {
			// The API server's 400s for logs say why (container not
			// found, not running); keep its words.
			return nil, fmt.Errorf("%w: %s", ErrNoLog, strings.TrimSuffix(mapped.Error(), ": "+tools.ErrInvalidArguments.Error()))
		}
		return nil, mapped
	}
	text, truncated := cutLog(logBody, capBytes)
	out := &tools.Output{
		Streams:   &tools.Streams{Stdout: text},
		Truncated: truncated,
		Duration:  time.Since(start),
		Extra:     map[string]any{"tool": "kubectl_logs", "namespace": ns, "pod": a.Pod, "lines": strings.Count(text, "\n")},
	}
	if container != "" {
		out.Extra["container"] = container
	}
	switch {
	case truncated && text == "":
		out.Notice = fmt.Sprintf("the log's first line is longer than the cap of %d bytes, so nothing is shown (a part of a line could hold part of a secret no masking recognises); narrow with tail_lines or since", capBytes)
	case truncated:
		out.Notice = fmt.Sprintf("log cut at %d bytes (the first lines of what was asked are shown); narrow with tail_lines or since", capBytes)
	}
	return out, nil
}

// cutLog keeps at most max bytes of the log, ending on a whole line: none
// when the first line alone is longer (a part of a line could end inside
// a secret, too short for a detector to recognise).
func cutLog(body []byte, max int64) (string, bool) {
	if int64(len(body)) <= max {
		return string(body), false
	}
	kept := body[:max]
	i := strings.LastIndexByte(string(kept), '\n')
	if i < 0 {
		return "", true
	}
	return strings.ToValidUTF8(string(kept[:i+1]), ""), true
}

// LogsResult is kubectl_logs' structured content.
type LogsResult struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container,omitempty"`
	Log       string `json:"log"`
	Lines     int    `json:"lines"`
	Truncated bool   `json:"truncated"`
	Notice    string `json:"notice,omitempty"`
}

// Render shows the masked log as it is, with the notice after it.
func (*Logs) Render(out *tools.Output) (any, string) {
	res := &LogsResult{Namespace: str(out.Extra, "namespace"), Pod: str(out.Extra, "pod"), Container: str(out.Extra, "container"),
		Truncated: out.Truncated, Notice: out.Notice}
	if out.Streams != nil {
		res.Log = out.Streams.Stdout
	}
	res.Lines = strings.Count(res.Log, "\n")
	text := strings.TrimRight(res.Log, "\n")
	if text == "" {
		text = "(the log is empty)"
	}
	if res.Notice != "" {
		text += "\n[" + res.Notice + "]"
	}
	return res, text
}
