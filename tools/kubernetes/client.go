package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/airlock-mcp/airlock/tools"
)

// apiClient sends requests to the API server over an http.Client built by
// client-go from a rest.Config (TLS, bearer token or client certificate,
// impersonation headers). It reads bodies itself, so it can cap how much
// it reads and account for bytes.
type apiClient struct {
	http *http.Client
	base *url.URL
	// getOnly refuses every method but GET (the read tools' client).
	getOnly bool
}

func newAPIClient(cfg *rest.Config) (*apiClient, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, err
	}
	return &apiClient{http: hc, base: base}, nil
}

// errTooLarge means a response body exceeded the read cap.
var errTooLarge = errors.New("response too large")

// do sends one request and returns the body of a 2xx answer, at most limit
// bytes. Any other status becomes an *apierrors.StatusError built from the
// API server's Status object, so callers can match reasons, not text.
func (c *apiClient) do(ctx context.Context, method, path string, query url.Values, accept string, body []byte, limit int64) ([]byte, error) {
	return c.send(ctx, method, path, query, accept, "application/json", body, limit)
}

// send is do with the body's content type (a merge patch, an apply patch).
func (c *apiClient) send(ctx context.Context, method, path string, query url.Values, accept, contentType string, body []byte, limit int64) ([]byte, error) {
	if c.getOnly && method != http.MethodGet {
		return nil, fmt.Errorf("a read-only tool may send GET requests only, not %s", method)
	}
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, statusError(resp.StatusCode, method, data)
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge
	}
	return data, nil
}

// statusError decodes the API server's Status, or makes one from the code.
func statusError(code int, method string, body []byte) error {
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err == nil && st.Kind == "Status" {
		if st.Code == 0 {
			st.Code = int32(code)
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return apierrors.NewGenericServerResponse(code, method, schema.GroupResource{}, "", msg, 0, true)
}

// describeAPIError maps a request error to the package's sentinels, with a
// message the agent can act on.
func describeAPIError(err error) error {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		msg := se.Status().Message
		switch {
		case apierrors.IsForbidden(err):
			return fmt.Errorf("%w: %s", ErrForbidden, msg)
		case apierrors.IsUnauthorized(err):
			return fmt.Errorf("%w: the credential was not accepted (%s); it may have expired", ErrForbidden, msg)
		case apierrors.IsNotFound(err):
			return fmt.Errorf("%w: %s", ErrNotFound, msg)
		case apierrors.IsConflict(err):
			return fmt.Errorf("%w: %s", ErrConflict, msg)
		case apierrors.IsBadRequest(err), apierrors.IsInvalid(err):
			return fmt.Errorf("the cluster rejected the request: %s: %w", msg, tools.ErrInvalidArguments)
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			return fmt.Errorf("the continue token has expired (%s); list again without continue: %w", msg, tools.ErrInvalidArguments)
		case apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsTooManyRequests(err):
			return fmt.Errorf("the API server is busy (%s): %w", msg, tools.ErrBackendUnavailable)
		}
		return fmt.Errorf("the API server answered %d: %s", se.Status().Code, msg)
	}
	if errors.Is(err, errTooLarge) {
		return fmt.Errorf("the API server's answer is larger than airlock reads; ask for fewer objects (limit) or one by name: %w", tools.ErrInvalidArguments)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("the API server did not answer in time: %w", tools.ErrBackendUnavailable)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if unreachable(err) {
		return fmt.Errorf("cannot reach the API server: %v: %w", netCause(err), tools.ErrBackendUnavailable)
	}
	return fmt.Errorf("talking to the API server: %w", err)
}

// unreachable reports whether err means the API server is down or went away.
func unreachable(err error) bool {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &oe):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	var ue *url.Error
	return errors.As(err, &ue) && strings.Contains(ue.Err.Error(), "connection")
}

// netCause is the innermost error of a failed request, without the URL.
func netCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
